//! `txgate check` and start-up validation: every config mistake names its file and key.

use std::process::Command;

use crate::support::bin;

fn check(config: &str) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, config).unwrap();
    let output = Command::new(bin("txgate"))
        .arg("check")
        .arg("-c")
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.success(), stdout, stderr)
}

#[test]
fn config_typo_names_its_key() {
    // Proves a misspelt key is an error naming the file and the full key path, and check exits 1.
    let (ok, _, stderr) =
        check("[upstreams.bank_a]\nurl = \"http://127.0.0.1:7001\"\ntimeout_msx = 5\n");
    assert!(!ok);
    assert!(
        stderr.contains("gateway.toml: upstreams.bank_a.timeout_msx: unknown field"),
        "{stderr}"
    );
}

#[test]
fn check_prints_every_error() {
    // Proves one run reports a wrong type, a bad reference and a missing saga call together.
    let config = r#"
[server]
max_body_bytes = "big"

[upstreams.bank_a]
url = "http://127.0.0.1:7001"

[[routes]]
name = "api"
path_prefix = "/api/"
upstream = "bank_b"
plugins = ["ghost"]

[[routes]]
name = "transfers"
path = "/transfers"
[routes.saga]
mode = "saga"
[[routes.saga.steps]]
name = "debit"
upstream = "bank_a"
action = "POST /debit"
"#;
    let (ok, _, stderr) = check(config);
    assert!(!ok);
    for key in [
        "server.max_body_bytes: invalid type",
        "routes[0].upstream: unknown upstream `bank_b`",
        "routes[0].plugins[0]: unknown plugin `ghost`",
        "routes[1].saga.steps[0].compensate: required",
    ] {
        assert!(stderr.contains(key), "missing `{key}` in:\n{stderr}");
    }
}

#[test]
fn valid_config_passes_check() {
    // Proves check exits 0 with a summary on a good config.
    let (ok, stdout, stderr) = check(
        "[upstreams.a]\nurl = \"http://127.0.0.1:1\"\n[[routes]]\nname = \"r\"\npath = \"/\"\nupstream = \"a\"\n",
    );
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("OK (1 routes, 1 upstreams, 0 plugins)"),
        "{stdout}"
    );
}

#[test]
fn serve_refuses_a_bad_config_with_exit_1() {
    // Proves serve validates exactly like check and does not start on a bad config.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[serverx]\n").unwrap();
    let output = Command::new(bin("txgate"))
        .arg("serve")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("bad.toml: serverx: unknown key"));
}

#[test]
fn a_fleet_config_names_its_missing_url_and_bad_lease() {
    // Proves backend = "postgres" without a URL (and no TXGATE_STORE_URL) names `store.url`, and
    // a lease outside its bounds names `store.lease_ms`, in one run.
    let (ok, _, stderr) = check("[store]\nbackend = \"postgres\"\nlease_ms = 10\n");
    assert!(!ok);
    assert!(
        stderr.contains("gateway.toml: store.url: required"),
        "{stderr}"
    );
    assert!(stderr.contains("TXGATE_STORE_URL"), "{stderr}");
    assert!(
        stderr.contains("gateway.toml: store.lease_ms: must be between"),
        "{stderr}"
    );
}

#[test]
fn check_asks_each_plugin_for_its_hooks_so_a_plugin_refusing_its_config_fails_it() {
    // Proves `txgate check` catches what only the plugin knows is wrong, as a start would: a
    // jwt_auth key with an unsupported `alg` fails check naming the plugin, with the plugin's
    // own words naming the key; the same config with a good key set passes.
    let jwks = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/jwt/jwks.json"
    ))
    .unwrap();
    let config = |jwks: &str| {
        format!(
            "[upstreams.bank]\nurl = \"http://127.0.0.1:9\"\n\
             [plugins.jwt_auth]\nmodule = \"{}\"\n[plugins.jwt_auth.config]\njwks = '''{jwks}'''\n\
             [[routes]]\nname = \"api\"\npath_prefix = \"/\"\nupstream = \"bank\"\nplugins = [\"jwt_auth\"]\n",
            crate::wasm::JWT_AUTH
        )
    };
    let (ok, stdout, stderr) = check(&config(&jwks));
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("OK (1 routes, 1 upstreams, 1 plugins)"),
        "{stdout}"
    );

    let (ok, _, stderr) = check(&config(&jwks.replacen("\"ES256\"", "\"ES999\"", 1)));
    assert!(!ok, "check must fail");
    assert!(
        stderr.contains("plugins.jwt_auth.module: its hooks() call failed"),
        "{stderr}"
    );
    // The refusal itself quotes what the plugin logged, naming the key.
    let refusal = stderr
        .lines()
        .find(|line| line.contains("plugins.jwt_auth.module"))
        .unwrap();
    assert!(
        refusal.contains("the plugin logged: plugin config: jwks.keys[")
            && refusal.contains("`ES999` is not supported"),
        "{refusal}"
    );
}

#[test]
fn a_plugin_built_for_the_old_abi_is_refused_by_name_at_check_and_at_start() {
    // Proves a component built against txgate:plugin@0.1.0 is refused before it could run: by
    // `txgate check` and by `txgate serve`, each naming the plugin's key and the ABI it was
    // built for, instead of a linker error about missing exports.
    let config = format!(
        r#"
[upstreams.bank]
url = "http://127.0.0.1:9"
[plugins.legacy]
module = "{}"
[[routes]]
name = "api"
path_prefix = "/"
upstream = "bank"
plugins = ["legacy"]
"#,
        crate::wasm::OLD_ABI
    );
    let said = |stderr: &str| {
        stderr.contains("plugins.legacy.module")
            && stderr.contains("built for the old plugin ABI txgate:plugin@0.1.0")
            && stderr.contains("txgate:plugin@0.2.3")
    };
    let (ok, _, stderr) = check(&config);
    assert!(!ok, "check must fail");
    assert!(said(&stderr), "{stderr}");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n[store]\ndir = {:?}\n{config}",
        dir.path().join("store").display().to_string()
    );
    std::fs::write(&path, config).unwrap();
    let output = Command::new(bin("txgate"))
        .args(["serve", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "serve must refuse to start");
    assert!(said(&stderr), "{stderr}");
}
