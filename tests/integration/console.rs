//! The operator console at `/ui/` (SPEC §6), over HTTP against a real gateway and banks: sign-in
//! into a strict cookie, search, a saga's page with its body escaped, actions through forms with
//! an anti-CSRF token and a required reason, and a `read` operator who may only look.

use std::time::Duration;

use reqwest::redirect::Policy;
use serde_json::{Value, json};

use crate::sagas::{banks, transfer_routes};
use crate::support::{Bank, Gateway, GatewayBuilder, client, wait_until};

pub(crate) const OPS: &str = "ops-token-0123456789";
pub(crate) const READER: &str = "reader-token-0123456789";

pub(crate) async fn gateway_with_operators(a: &Bank, b: &Bank) -> Gateway {
    GatewayBuilder::new(transfer_routes(a, b, ""))
        .server("request_timeout_ms = 300")
        .server("admin_token = \"admin-token-0123456789\"")
        .server(&format!(
            "[[server.admin_tokens]]\nname = \"ops-alice\"\ntoken = \"{OPS}\"\nrole = \"operate\""
        ))
        .server(&format!(
            "[[server.admin_tokens]]\nname = \"reader-bob\"\ntoken = \"{READER}\"\nrole = \"read\""
        ))
        .start()
        .await
}

/// A browser-like session: no redirects followed, the session cookie sent back by hand.
pub(crate) struct Browser<'a> {
    gateway: &'a Gateway,
    http: reqwest::Client,
    cookie: String,
}

impl<'a> Browser<'a> {
    pub(crate) async fn sign_in(gateway: &'a Gateway, token: &str) -> Browser<'a> {
        let http = reqwest::Client::builder()
            .redirect(Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let response = http
            .post(gateway.admin_url("/ui/login"))
            .form(&[("token", token)])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 303);
        let set = response.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .to_string();
        for flag in ["HttpOnly", "SameSite=Strict", "Path=/ui"] {
            assert!(set.contains(flag), "{set}");
        }
        let cookie = set.split(';').next().unwrap().to_string();
        Browser {
            gateway,
            http,
            cookie,
        }
    }

    pub(crate) async fn get(&self, path: &str) -> (u16, String) {
        let response = self
            .http
            .get(self.gateway.admin_url(path))
            .header("cookie", &self.cookie)
            .send()
            .await
            .unwrap();
        let csp = response.headers()["content-security-policy"]
            .to_str()
            .unwrap();
        assert!(csp.contains("default-src 'none'"), "{csp}");
        (response.status().as_u16(), response.text().await.unwrap())
    }

    async fn post(&self, path: &str, form: &[(&str, &str)], origin: Option<&str>) -> (u16, String) {
        let mut request = self
            .http
            .post(self.gateway.admin_url(path))
            .header("cookie", &self.cookie)
            .form(form);
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.text().await.unwrap())
    }

    fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.gateway.admin_port)
    }
}

/// The anti-CSRF token a page's forms carry.
fn csrf(page: &str) -> String {
    let at = page
        .find("name=\"csrf\" value=\"")
        .expect("a form with its token")
        + 19;
    page[at..at + 64].to_string()
}

/// A stuck saga whose body holds a script tag; its id.
pub(crate) async fn stuck_with_script(gateway: &Gateway, a: &Bank) -> String {
    a.fault(json!({"kind": "fail_before", "path_prefix": "/debit/compensate"}))
        .await;
    let body = json!({"from": "alice", "to": "nobody", "amount": 100, "memo": "<script>alert(1)</script>"});
    let response = client()
        .post(gateway.url("/transfers"))
        .header("x-request-id", "console-1")
        .json(&body)
        .send()
        .await
        .unwrap();
    let answer: Value = response.json().await.unwrap();
    let id = answer["saga_id"].as_str().unwrap().to_string();
    wait_until(Duration::from_secs(20), "the saga to be stuck", || async {
        gateway.admin_json(&format!("/admin/sagas/{id}")).await["status"] == "stuck"
    })
    .await;
    id
}

#[tokio::test]
async fn the_console_signs_in_finds_a_stuck_saga_shows_it_escaped_and_records_a_resolve() {
    // Proves sign-in by token, search by X-Request-ID, the saga's page with its body shown as
    // text, and a resolve through the page's form, with its reason and the operator's name in
    // the timeline afterwards.
    let (a, b) = banks().await;
    let gateway = gateway_with_operators(&a, &b).await;
    let id = stuck_with_script(&gateway, &a).await;
    let anonymous = client()
        .get(gateway.admin_url("/ui/"))
        .send()
        .await
        .unwrap();
    assert!(
        anonymous.url().path().ends_with("/ui/login"),
        "sent to sign in"
    );
    let refused = reqwest::Client::new()
        .post(gateway.admin_url("/ui/login"))
        .form(&[("token", "nobody-0123456789abcdef")])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);

    let browser = Browser::sign_in(&gateway, OPS).await;
    let (status, found) = browser.get("/ui/?q=console-1").await;
    assert_eq!(status, 200);
    assert!(
        found.contains(&format!("href=\"/ui/sagas/{id}\"")),
        "{found}"
    );
    let (_, attention) = browser.get("/ui/attention").await;
    assert!(attention.contains(&id), "a stuck saga needs attention");
    let (status, page) = browser.get(&format!("/ui/sagas/{id}")).await;
    assert_eq!(status, 200);
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{page}"
    );
    assert!(!page.contains("<script>"), "no script reaches the page");
    assert!(page.contains("ops-alice"), "the operator's name is shown");
    let token = csrf(&page);
    let reason = "refunded by hand, ticket INC-9";
    let (status, _) = browser
        .post(
            &format!("/ui/sagas/{id}/resolve"),
            &[("csrf", &token), ("reason", reason), ("confirm", "yes")],
            Some(&browser.origin()),
        )
        .await;
    assert_eq!(status, 303);
    let (_, page) = browser.get(&format!("/ui/sagas/{id}")).await;
    assert!(
        page.contains(reason) && page.contains("ops-alice"),
        "{page}"
    );
    let view = gateway.admin_json(&format!("/admin/sagas/{id}")).await;
    assert_eq!(view["status"], "compensated");
    assert_eq!(view["actions"][0]["operator"], "ops-alice");
    assert_eq!(view["actions"][0]["reason"], reason);
}

#[tokio::test]
async fn a_read_operator_sees_no_action_and_forged_forms_are_refused() {
    // Proves a `read` operator's page has no action form and its post anyway gets 403; and, for
    // an operator who may act, a form from another origin, one without the session's token,
    // one without a reason, and an action by GET are all refused, leaving the saga as it was.
    let (a, b) = banks().await;
    let gateway = gateway_with_operators(&a, &b).await;
    let id = stuck_with_script(&gateway, &a).await;
    let resolve = format!("/ui/sagas/{id}/resolve");

    let reader = Browser::sign_in(&gateway, READER).await;
    let (_, page) = reader.get(&format!("/ui/sagas/{id}")).await;
    assert!(!page.contains("/resolve\""), "no action form for a reader");
    let token = csrf(&page);
    let form = [
        ("csrf", token.as_str()),
        ("reason", "x"),
        ("confirm", "yes"),
    ];
    let (status, _) = reader.post(&resolve, &form, Some(&reader.origin())).await;
    assert_eq!(status, 403);

    let ops = Browser::sign_in(&gateway, OPS).await;
    let (_, page) = ops.get(&format!("/ui/sagas/{id}")).await;
    assert!(
        page.contains("/resolve\""),
        "an operator is offered resolve"
    );
    let token = csrf(&page);
    let good = [
        ("csrf", token.as_str()),
        ("reason", "fixed"),
        ("confirm", "yes"),
    ];
    let (status, _) = ops.post(&resolve, &good, Some("http://evil.example")).await;
    assert_eq!(status, 403, "another origin");
    let (status, _) = ops.post(&resolve, &good, Some("null")).await;
    assert_eq!(
        status, 403,
        "a hidden origin, and no Sec-Fetch-Site to vouch for it"
    );
    let no_token = [("reason", "fixed"), ("confirm", "yes")];
    let (status, _) = ops.post(&resolve, &no_token, Some(&ops.origin())).await;
    assert_eq!(status, 403, "no anti-CSRF token");
    let other = [
        (
            "csrf",
            csrf(&reader.get(&format!("/ui/sagas/{id}")).await.1),
        ),
        ("reason", "fixed".into()),
        ("confirm", "yes".into()),
    ];
    let other: Vec<(&str, &str)> = other.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, _) = ops.post(&resolve, &other, Some(&ops.origin())).await;
    assert_eq!(status, 403, "another session's token");
    let no_reason = [
        ("csrf", token.as_str()),
        ("reason", " "),
        ("confirm", "yes"),
    ];
    let (status, _) = ops.post(&resolve, &no_reason, Some(&ops.origin())).await;
    assert_eq!(status, 400, "no reason");
    let (status, _) = ops.get(&resolve).await;
    assert_eq!(status, 405, "no action by GET");
    let view = gateway.admin_json(&format!("/admin/sagas/{id}")).await;
    assert_eq!(view["status"], "stuck", "{view}");
    assert_eq!(view["actions"], json!([]));
}

#[tokio::test]
async fn the_list_counts_filters_and_charts_and_a_saga_page_shows_bodies_masked() {
    // Proves the sagas page counts each status, filters by route and time (bad input named in
    // a 400), and charts the last hour; and that a saga's page shows its bodies as the route's
    // mask plugin does, never the card number or e-mail address as stored.
    let (a, b) = banks().await;
    let routes = transfer_routes(&a, &b, "").replace(
        "path = \"/transfers\"",
        "path = \"/transfers\"\nplugins = [\"mask\"]",
    );
    let config = format!(
        "{routes}\n[plugins.mask]\nmodule = \"{}\"\n[plugins.mask.config]\nluhn_scan = true\n\
         rules = [{{ path = \"$..email\", mask = \"email\" }}]\n",
        crate::wasm::MASK
    );
    let gateway = GatewayBuilder::new(config)
        .server(&format!(
            "[[server.admin_tokens]]\nname = \"ops-alice\"\ntoken = \"{OPS}\"\nrole = \"operate\""
        ))
        .start()
        .await;
    let body = json!({"from": "alice", "to": "carol", "amount": 5,
                      "memo": "card 4111111111111111", "email": "alice@example.com"});
    let response = client()
        .post(gateway.url("/transfers"))
        .header("x-request-id", "masked-1")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let id = response.json::<Value>().await.unwrap()["saga_id"]
        .as_str()
        .unwrap()
        .to_string();

    let browser = Browser::sign_in(&gateway, OPS).await;
    let (status, list) = browser.get("/ui/").await;
    assert_eq!(status, 200);
    assert!(
        list.contains("completed</span> <strong>1</strong>"),
        "{list}"
    );
    assert!(list.contains("1 sagas finished"), "the chart: {list}");
    assert!(list.contains("<svg"), "{list}");
    let link = format!("href=\"/ui/sagas/{id}\"");
    assert!(browser.get("/ui/?route=transfers").await.1.contains(&link));
    assert!(!browser.get("/ui/?route=refunds").await.1.contains(&link));
    assert!(
        !browser
            .get("/ui/?before=2000-01-01T00:00")
            .await
            .1
            .contains(&link)
    );
    assert!(
        browser
            .get("/ui/?before=2100-01-01T00:00")
            .await
            .1
            .contains(&link)
    );
    let (status, page) = browser.get("/ui/?before=yesterday").await;
    assert_eq!(status, 400);
    assert!(page.contains("before"), "{page}");

    let (_, page) = browser.get(&format!("/ui/sagas/{id}")).await;
    assert!(page.contains("mask plugin"), "{page}");
    assert!(page.contains("************1111"), "{page}");
    assert!(page.contains("a***@example.com"), "{page}");
    assert!(!page.contains("4111111111111111"), "{page}");
    assert!(!page.contains("alice@example.com"), "{page}");

    // The mask plugin taken out of the config: the saga ran with it, so its bodies stay hidden.
    gateway.write_config(&transfer_routes(&a, &b, ""));
    let reloaded = client()
        .post(gateway.admin_url("/admin/reload"))
        .bearer_auth(OPS)
        .send()
        .await
        .unwrap();
    assert_eq!(reloaded.status(), 200);
    let (_, page) = browser.get(&format!("/ui/sagas/{id}")).await;
    assert!(page.contains("withheld"), "{page}");
    assert!(!page.contains("4111111111111111"), "{page}");
    assert!(!page.contains("alice@example.com"), "{page}");
}
