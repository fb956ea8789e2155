//! The checks of a message route (`[routes.msg]`, SPEC §9): where its calls live, its
//! back-check, and its consumers.

use super::validate::{Issues, known_upstream, steps_checks};
use super::{Config, MsgConfig, RouteConfig, SagaMode, parse_call};

/// The longest a message may wait for its submit before the back-check (a day).
const PREPARE_TIMEOUT_MS_MAX: u64 = 86_400_000;

/// Checks a route's `msg` table; issues are named by key.
pub(super) fn check(
    key: &str,
    route: &RouteConfig,
    msg: &MsgConfig,
    config: &Config,
    issues: &mut Issues,
) {
    if route.path_prefix.is_none() {
        issues.push(
            format!("{key}.path_prefix"),
            "a message route needs `path_prefix`: its submit and abort calls are under it",
        );
    }
    if !route.methods.is_empty() && !route.methods.iter().any(|m| m == "POST") {
        issues.push(
            format!("{key}.methods"),
            "a message route is called with POST",
        );
    }
    let msg_key = format!("{key}.msg");
    if let Err(reason) = parse_call(&msg.check) {
        issues.push(format!("{msg_key}.check"), reason);
    }
    known_upstream(
        &format!("{msg_key}.check_upstream"),
        &msg.check_upstream,
        config,
        issues,
    );
    if msg.prepare_timeout_ms == 0 || msg.prepare_timeout_ms > PREPARE_TIMEOUT_MS_MAX {
        issues.push(
            format!("{msg_key}.prepare_timeout_ms"),
            format!("must be 1 to {PREPARE_TIMEOUT_MS_MAX}"),
        );
    }
    steps_checks(
        &msg_key,
        &msg.client_key,
        &msg.steps,
        SagaMode::Msg,
        config,
        issues,
    );
}

#[cfg(test)]
mod tests {
    use super::super::load::parse;
    use super::super::validate::validate;

    fn issues_of(text: &str) -> Vec<String> {
        validate(&parse(text).unwrap(), &[])
            .into_iter()
            .map(|i| i.key)
            .collect()
    }

    const UPSTREAMS: &str = "[upstreams.orders]\nurl = \"http://127.0.0.1:1\"\n\
        [upstreams.bank]\nurl = \"http://127.0.0.1:2\"\n";

    #[test]
    fn a_message_route_is_checked_key_by_key() {
        let good = format!(
            "{UPSTREAMS}[[routes]]\nname = \"m\"\npath_prefix = \"/msg/orders\"\n[routes.msg]\n\
             check = \"POST /orders/check\"\ncheck_upstream = \"orders\"\n\
             [[routes.msg.steps]]\nname = \"ledger\"\nupstream = \"bank\"\naction = \"POST /events\"\n"
        );
        assert!(issues_of(&good).is_empty(), "{:?}", issues_of(&good));
        let bad = format!(
            "{UPSTREAMS}[[routes]]\nname = \"m\"\npath = \"/msg\"\n[routes.msg]\n\
             check = \"check\"\ncheck_upstream = \"nowhere\"\nprepare_timeout_ms = 0\n\
             [[routes.msg.steps]]\nname = \"ledger\"\nupstream = \"bank\"\n\
             compensate = \"POST /undo\"\n"
        );
        assert_eq!(
            issues_of(&bad),
            [
                "routes[0].path_prefix",
                "routes[0].msg.check",
                "routes[0].msg.check_upstream",
                "routes[0].msg.prepare_timeout_ms",
                "routes[0].msg.steps[0].action",
                "routes[0].msg.steps[0].compensate",
            ]
        );
    }
}
