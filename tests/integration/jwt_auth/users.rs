//! Exactly once per authenticated user, with `examples/users.toml` itself: its jwt_auth config
//! and routes around two test banks, its demo key, and its `mint.sh`.

use std::process::Command;

use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};

use super::tokens::{now_secs, read, repo_file, sign_with};
use crate::support::{Bank, Gateway, GatewayBuilder, bin, client};
use crate::wasm;

/// `examples/users.toml` around two test banks: its plugin config and routes as they are.
fn users_example(a: &Bank, b: &Bank) -> String {
    let mut example: toml::Table = read("examples/users.toml").parse().unwrap();
    example.remove("server");
    example.remove("store");
    let table = |value: &mut toml::Value| value.as_table_mut().unwrap().clone();
    let mut upstreams = table(example.get_mut("upstreams").unwrap());
    for (name, bank) in [("bank_a", a), ("bank_b", b)] {
        upstreams[name]
            .as_table_mut()
            .unwrap()
            .insert("url".into(), bank.base().into());
    }
    example.insert("upstreams".into(), upstreams.into());
    let plugins = example.get_mut("plugins").unwrap().as_table_mut().unwrap();
    let jwt = plugins.get_mut("jwt_auth").unwrap().as_table_mut().unwrap();
    jwt.insert("module".into(), wasm::JWT_AUTH.into());
    toml::to_string(&example).unwrap()
}

async fn transfer(
    gateway: &Gateway,
    token: Option<&str>,
    forged_user: Option<&str>,
) -> (u16, Value) {
    let mut request = client()
        .post(gateway.url("/transfers"))
        .header("x-request-id", "same-id")
        .json(&json!({"from": "alice", "to": "carol", "amount": 10}));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(user) = forged_user {
        request = request.header("X-User-ID", user);
    }
    let response = request.send().await.unwrap();
    (
        response.status().as_u16(),
        response.json().await.unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn exactly_once_per_authenticated_user() {
    // Proves, with examples/users.toml's config and its demo key: two users sending the same
    // X-Request-ID and body get two sagas, both applied; one user repeating gets its own saga
    // back; and a client naming a user in X-User-ID, without that user's token, never gets
    // that user's saga.
    let a = Bank::start(&["alice=1000"]).await;
    let b = Bank::start(&["carol=1000"]).await;
    let gateway = GatewayBuilder::new(users_example(&a, &b)).start().await;
    let minted = Command::new(repo_file("examples/jwt/mint.sh"))
        .arg("alice")
        .output()
        .unwrap();
    assert!(
        minted.status.success(),
        "{}",
        String::from_utf8_lossy(&minted.stderr)
    );
    let alice = String::from_utf8(minted.stdout).unwrap().trim().to_string();
    let demo = EncodingKey::from_rsa_pem(read("examples/jwt/demo-key.pem").as_bytes()).unwrap();
    let bob_claims = json!({"iss": "https://id.example.com/", "aud": "txgate-demo", "sub": "bob",
        "exp": now_secs() + 600, "scope": "transfers:write"});
    let bob = sign_with(Algorithm::RS256, "demo-1", &bob_claims, &demo);

    let (status, first) = transfer(&gateway, Some(&alice), None).await;
    assert_eq!(
        (status, &first["status"]),
        (200, &json!("completed")),
        "{first}"
    );
    let (status, second) = transfer(&gateway, Some(&bob), Some("alice")).await;
    assert_eq!(
        (status, &second["status"]),
        (200, &json!("completed")),
        "{second}"
    );
    assert_ne!(first["saga_id"], second["saga_id"], "two users, two sagas");
    assert_eq!(a.hits("/debit").await, 2);
    assert_eq!(
        (a.balance("alice").await, b.balance("carol").await),
        (980, 1020)
    );

    let (status, again) = transfer(&gateway, Some(&alice), Some("bob")).await;
    assert_eq!(status, 200);
    assert_eq!(
        again["saga_id"], first["saga_id"],
        "the same user gets the same saga"
    );
    for user in ["alice", "bob"] {
        let (status, forged) = transfer(&gateway, None, Some(user)).await;
        assert_eq!(status, 401, "{forged}");
        for saga in [&first["saga_id"], &second["saga_id"]] {
            assert!(
                !forged.to_string().contains(saga.as_str().unwrap()),
                "{forged}"
            );
        }
    }
    assert_eq!(a.hits("/debit").await, 2, "nothing ran again");
}

#[test]
fn the_users_example_passes_check_with_the_demo_key_set() {
    // Proves examples/users.toml is a valid config whose module compiles, holding the demo
    // key set of examples/jwt/ and naming the client by the header jwt_auth sets.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("examples")).unwrap();
    std::fs::create_dir_all(dir.path().join("target/plugins")).unwrap();
    let config = dir.path().join("examples/users.toml");
    std::fs::copy(repo_file("examples/users.toml"), &config).unwrap();
    std::fs::copy(
        wasm::JWT_AUTH,
        dir.path().join("target/plugins/jwt_auth.wasm"),
    )
    .unwrap();
    let output = Command::new(bin("txgate"))
        .arg("check")
        .arg("-c")
        .arg(&config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("OK (2 routes, 2 upstreams, 1 plugins)"),
        "{stdout}"
    );

    let example: toml::Table = read("examples/users.toml").parse().unwrap();
    let settings = &example["plugins"]["jwt_auth"]["config"];
    let jwks: Value = serde_json::from_str(settings["jwks"].as_str().unwrap()).unwrap();
    let demo: Value = serde_json::from_str(&read("examples/jwt/jwks.json")).unwrap();
    assert_eq!(jwks, demo);
    assert_eq!(
        settings["claims_to_headers"]["sub"].as_str(),
        Some("X-User-ID")
    );
    let route = &example["routes"].as_array().unwrap()[0];
    assert_eq!(
        route["saga"]["client_key"].as_str(),
        Some("header:X-User-ID")
    );
}
