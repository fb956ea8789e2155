//! `#[txgate_plugin_sdk::plugin]`: put it on a plugin's `impl Plugin for T` block, and it
//! writes `fn hooks()` from the hooks the block defines. The gateway calls only those, so a
//! hook a plugin leaves out costs nothing. Use the attribute through `txgate-plugin-sdk`, which
//! re-exports it.

use proc_macro::TokenStream;
use quote::{format_ident, quote};
use syn::{ImplItem, ItemImpl, parse_macro_input};

/// The hooks of the WIT world, by their Rust method names.
const HOOKS: [(&str, &str); 5] = [
    ("on_request", "OnRequest"),
    ("on_step_request", "OnStepRequest"),
    ("on_step_response", "OnStepResponse"),
    ("on_compensate", "OnCompensate"),
    ("on_response", "OnResponse"),
];

/// Lists the hooks an `impl Plugin for T` block defines in a generated `fn hooks()`, unless
/// the block writes `hooks` itself. A method that is not a hook is a compile error, so a typo
/// in a hook's name cannot leave the hook silently uncalled.
#[proc_macro_attribute]
pub fn plugin(attr: TokenStream, item: TokenStream) -> TokenStream {
    if !attr.is_empty() {
        let message = "`#[plugin]` takes no arguments";
        return syn::Error::new(proc_macro2::Span::call_site(), message)
            .to_compile_error()
            .into();
    }
    let mut block = parse_macro_input!(item as ItemImpl);
    let mut defined = Vec::new();
    let mut writes_hooks = false;
    for item in &block.items {
        let ImplItem::Fn(function) = item else {
            continue;
        };
        let name = function.sig.ident.to_string();
        if name == "hooks" {
            writes_hooks = true;
        } else if let Some((_, variant)) = HOOKS.iter().find(|(method, _)| *method == name) {
            defined.push(format_ident!("{}", variant));
        } else {
            let known: Vec<&str> = HOOKS.iter().map(|(method, _)| *method).collect();
            let message = format!(
                "`{name}` is not a txgate hook; the hooks are {}",
                known.join(", ")
            );
            return syn::Error::new(function.sig.ident.span(), message)
                .to_compile_error()
                .into();
        }
    }
    if !writes_hooks {
        block.items.push(syn::parse_quote! {
            fn hooks() -> ::std::vec::Vec<::txgate_plugin_sdk::Hook> {
                ::std::vec![#(::txgate_plugin_sdk::Hook::#defined),*]
            }
        });
    }
    quote!(#block).into()
}
