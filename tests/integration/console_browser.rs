//! The operator console in a real browser (headless chromium through chromedriver) against a
//! real gateway and banks: sign in, find a stuck saga by its X-Request-ID, open it, resolve it
//! with a reason, and see the reason and the operator's name in its timeline; a `read` operator
//! sees no action and is refused if it posts anyway; a body holding `<script>` shows as text; a
//! form posted from another origin is refused.
//!
//! With `CONSOLE_SCREENSHOTS_DIR` set, the main pages are saved there as PNG (the README's
//! pictures come from `CONSOLE_SCREENSHOTS_DIR=docs tests/run console_browser`).

use std::time::Duration;

use fantoccini::elements::Element;
use fantoccini::{Client, Locator};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

use crate::console::{OPS, READER, gateway_with_operators, stuck_with_script};
use crate::sagas::{banks, transfer};
use crate::support::{Browser, Gateway, client};

/// Signs in through the page's form, and lands on the sagas.
async fn sign_in(client: &Client, gateway: &Gateway, token: &str) {
    client.goto(&gateway.admin_url("/ui/")).await.unwrap();
    let url = client.current_url().await.unwrap();
    assert_eq!(url.path(), "/ui/login", "sent to sign in first");
    let field = client.find(Locator::Id("token")).await.unwrap();
    field.send_keys(token).await.unwrap();
    field.send_keys("\u{E007}").await.unwrap(); // Enter
    wait_for_path(client, "/ui/").await;
}

async fn wait_for_path(client: &Client, path: &str) {
    for _ in 0..400 {
        if client.current_url().await.unwrap().path() == path {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "never reached {path}; at {}: {}",
        client.current_url().await.unwrap(),
        client.source().await.unwrap()
    );
}

async fn text_of(client: &Client, css: &str) -> String {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"))
        .text()
        .await
        .unwrap()
}

/// The element `css` once the page shows it (after a navigation), waiting up to 20 s.
async fn shown(client: &Client, css: &str) -> Element {
    client
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("the page never showed {css}: {e}"))
}

/// The session's anti-CSRF token, as the open page's forms carry it.
async fn csrf_of(client: &Client) -> String {
    let field = client.find(Locator::Css("input[name=csrf]")).await.unwrap();
    field.attr("value").await.unwrap().expect("a token")
}

/// Saves the page as `name.png` when screenshots are asked for.
async fn snapshot(client: &Client, name: &str) {
    let png = client.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    if let Some(dir) = std::env::var_os("CONSOLE_SCREENSHOTS_DIR") {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }
}

/// Ten transfers that complete and two that compensate (no such payee), for the chart.
async fn traffic(gateway: &Gateway) {
    for n in 0..12 {
        let to = if n % 6 == 5 { "nobody" } else { "carol" };
        let response = client()
            .post(gateway.url("/transfers"))
            .header("x-request-id", format!("traffic-{n}"))
            .json(&serde_json::json!({"from": "alice", "to": to, "amount": 1}))
            .send()
            .await
            .unwrap();
        let status = response.status();
        assert!(status == 200 || status.is_client_error(), "{status}");
    }
}

#[tokio::test]
async fn an_operator_finds_a_stuck_saga_by_its_request_id_and_resolves_it_with_a_reason() {
    // Proves the console works end to end in a browser: sign-in, search, the saga's page with
    // its `<script>` body shown as text (no script element, no alert), and a resolve through the
    // confirmed form whose reason and operator then show in the saga's actions; and reconcile's
    // findings on their page, linked to their saga.
    let (a, b) = banks().await;
    let gateway = gateway_with_operators(&a, &b).await;
    traffic(&gateway).await;
    // A bank that acknowledges a debit and loses it, for reconcile to find.
    a.fault(serde_json::json!({"kind": "ack", "path_prefix": "/debit", "count": 1}))
        .await;
    let (status, lost) = transfer(&gateway, "/transfers", "lost-1", "alice", "carol", 5).await;
    assert_eq!(status, 200, "{lost}");
    let id = stuck_with_script(&gateway, &a).await;
    let browser = Browser::start().await;
    let client = &browser.client;
    client.goto(&gateway.admin_url("/ui/")).await.unwrap();
    snapshot(client, "console-login").await;
    sign_in(client, &gateway, OPS).await;
    let chart = text_of(client, "section.chart").await;
    assert!(chart.contains("13 sagas finished"), "{chart}");
    snapshot(client, "console-sagas").await;
    client
        .goto(&gateway.admin_url("/ui/attention"))
        .await
        .unwrap();
    let attention = text_of(client, "table.sagas").await;
    assert!(
        attention.contains("console-1"),
        "a stuck saga needs attention: {attention}"
    );
    snapshot(client, "console-attention").await;

    let search = client.find(Locator::Css("input[name=q]")).await.unwrap();
    search.send_keys("console-1\u{E007}").await.unwrap();
    // The attention page links the same saga: its results are on the page the search lands on.
    wait_for_path(client, "/ui/").await;
    // The search finds the saga by its X-Request-ID.
    let link = shown(client, &format!("a[href='/ui/sagas/{id}']")).await;
    link.click().await.unwrap();
    wait_for_path(client, &format!("/ui/sagas/{id}")).await;
    let body = text_of(client, "pre.body").await;
    assert!(body.contains("<script>alert(1)</script>"), "{body}");
    assert!(
        client
            .find_all(Locator::Css("script"))
            .await
            .unwrap()
            .is_empty(),
        "no script element reached the page"
    );
    assert!(
        client.get_alert_text().await.is_err(),
        "no script ran: no alert is open"
    );
    snapshot(client, "console-saga").await;

    let reason = "refunded by hand, ticket INC-9";
    let form = client
        .find(Locator::Css(&format!(
            "form[action='/ui/sagas/{id}/resolve']"
        )))
        .await
        .expect("an operator is offered resolve");
    form.find(Locator::Css("input[name=reason]"))
        .await
        .unwrap()
        .send_keys(reason)
        .await
        .unwrap();
    form.find(Locator::Css("input[name=confirm]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    form.find(Locator::Css("button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // The action is in the saga's timeline.
    let actions = shown(client, "table.actions").await.text().await.unwrap();
    assert!(actions.contains(reason), "{actions}");
    assert!(actions.contains("ops-alice"), "{actions}");
    let status = text_of(client, "dl.facts dd").await;
    assert!(status.starts_with("compensated"), "{status}");

    // Reconcile's finding (the lost debit) is on its page, linked to the saga.
    let run = crate::reconcile::reconcile(gateway.config_path(), &["--since", "1h"]);
    assert_eq!(run.code, Some(1), "{}{}", run.stdout, run.stderr);
    shown(client, "a[href='/ui/reconcile']")
        .await
        .click()
        .await
        .unwrap();
    wait_for_path(client, "/ui/reconcile").await;
    let findings = text_of(client, "table.findings").await;
    assert!(findings.contains("missing_effect"), "{findings}");
    let lost_id = lost["saga_id"].as_str().unwrap();
    shown(
        client,
        &format!("table.findings a[href='/ui/sagas/{lost_id}']"),
    )
    .await;
    snapshot(client, "console-reconcile").await;
    client
        .goto(&gateway.admin_url(&format!("/ui/sagas/{id}")))
        .await
        .unwrap();

    // On a phone: the page fits the screen's width (wide tables scroll inside themselves).
    client.set_window_size(390, 844).await.unwrap();
    let overflow = client
        .execute(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(overflow.as_i64(), Some(0), "the page is wider than a phone");
    snapshot(client, "console-phone").await;

    browser.close().await;
}

/// Serves one page, from another origin (another port), holding a form that posts `fields` to
/// `action`: what a hostile site a signed-in operator visits would do. Returns its URL.
async fn hostile_page(action: &str, fields: &[(&str, &str)]) -> String {
    let inputs: String = fields
        .iter()
        .map(|(name, value)| format!("<input type=hidden name=\"{name}\" value=\"{value}\">"))
        .collect();
    let html = format!(
        "<!doctype html><form method=post action=\"{action}\">{inputs}\
         <button id=go type=submit>Win a prize</button></form>"
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move {
        // One page view, and the favicon's.
        for _ in 0..4 {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\n\
                 connection: close\r\n\r\n{html}",
                html.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
        }
    });
    url
}

#[tokio::test]
async fn a_reader_sees_no_action_and_a_post_from_another_origin_is_refused() {
    // Proves, in a browser: a `read` operator's page has no action form, and a resolve it
    // posts anyway from the console's own origin gets 403; an operator who may act, lured to a
    // page on another origin that posts the resolve form (with the session's own anti-CSRF
    // token, as if it leaked), gets 403 too, and the saga stays stuck.
    let (a, b) = banks().await;
    let gateway = gateway_with_operators(&a, &b).await;
    let id = stuck_with_script(&gateway, &a).await;
    let resolve = format!("/ui/sagas/{id}/resolve");

    let reader = Browser::start().await;
    sign_in(&reader.client, &gateway, READER).await;
    reader
        .client
        .goto(&gateway.admin_url(&format!("/ui/sagas/{id}")))
        .await
        .unwrap();
    let forms = reader
        .client
        .find_all(Locator::Css("form.action"))
        .await
        .unwrap();
    assert!(forms.is_empty(), "a reader is offered no action");
    let csrf = csrf_of(&reader.client).await;
    // The reader builds the form by hand in the console's own page (WebDriver's script is not
    // the page's, so the console's CSP does not stop it) and submits it.
    let forged = format!(
        "const f = document.createElement('form'); f.method = 'post'; f.action = '{resolve}';
         for (const [k, v] of [['csrf', '{csrf}'], ['reason', 'looked only'], ['confirm', 'yes']]) {{
           const i = document.createElement('input'); i.name = k; i.value = v; f.appendChild(i);
         }}
         document.body.appendChild(f); f.submit();"
    );
    reader.client.execute(&forged, vec![]).await.unwrap();
    let refused = shown(&reader.client, "p.error").await.text().await.unwrap();
    assert!(refused.contains("read"), "{refused}");
    reader.close().await;

    let ops = Browser::start().await;
    sign_in(&ops.client, &gateway, OPS).await;
    ops.client
        .goto(&gateway.admin_url(&format!("/ui/sagas/{id}")))
        .await
        .unwrap();
    let csrf = csrf_of(&ops.client).await;
    let lure = hostile_page(
        &gateway.admin_url(&resolve),
        &[("csrf", &csrf), ("reason", "pwned"), ("confirm", "yes")],
    )
    .await;
    ops.client.goto(&lure).await.unwrap();
    ops.client
        .find(Locator::Id("go"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let refused = shown(&ops.client, "p.error").await.text().await.unwrap();
    assert!(refused.to_lowercase().contains("origin"), "{refused}");
    ops.close().await;

    let view = gateway.admin_json(&format!("/admin/sagas/{id}")).await;
    assert_eq!(view["status"], "stuck", "{view}");
    assert_eq!(view["actions"], serde_json::json!([]));
}
