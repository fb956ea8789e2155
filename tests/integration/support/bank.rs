//! A demo bank process.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use super::{bin, client, free_port, wait_until};

/// A running `txgate-bank`, killed on drop.
pub struct Bank {
    child: Child,
    /// Its port.
    pub port: u16,
    data: Option<std::path::PathBuf>,
    accounts: Vec<String>,
}

impl Bank {
    /// Starts a bank with opening balances (`"alice=100"`).
    pub async fn start(accounts: &[&str]) -> Self {
        Self::start_with(accounts, None).await
    }

    /// Starts a bank that keeps its books in `data` across restarts.
    pub async fn start_with(accounts: &[&str], data: Option<std::path::PathBuf>) -> Self {
        let port = free_port();
        let accounts: Vec<String> = accounts.iter().map(|a| a.to_string()).collect();
        let child = spawn(port, &accounts, data.as_deref());
        let bank = Self {
            child,
            port,
            data,
            accounts,
        };
        bank.wait_healthy().await;
        bank
    }

    /// Kills the bank (SIGKILL) and starts it again on the same port with the same books.
    pub async fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn(self.port, &self.accounts, self.data.as_deref());
        self.wait_healthy().await;
    }

    async fn wait_healthy(&self) {
        let url = self.url("/healthz");
        wait_until(Duration::from_secs(10), "the bank to listen", || {
            let url = url.clone();
            async move {
                client()
                    .get(url)
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 200)
            }
        })
        .await;
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A URL on the bank.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base())
    }

    /// Adds a fault rule (see the bank's `faults` module).
    pub async fn fault(&self, rule: Value) {
        let response = client()
            .post(self.url("/_faults"))
            .json(&rule)
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            200,
            "fault rule refused: {}",
            response.text().await.unwrap()
        );
    }

    /// Removes every fault rule.
    pub async fn clear_faults(&self) {
        client().delete(self.url("/_faults")).send().await.unwrap();
    }

    /// How many requests reached a business or echo path.
    pub async fn hits(&self, path: &str) -> u64 {
        self.stats().await["paths"][path].as_u64().unwrap_or(0)
    }

    /// The connections open to the bank now, other than the one that asks.
    pub async fn connections(&self) -> u64 {
        self.stats().await["connections"]
            .as_u64()
            .map_or(u64::MAX, |n| n.saturating_sub(1))
    }

    /// Every business request the bank saw.
    pub async fn total_hits(&self) -> u64 {
        self.stats().await["paths"]
            .as_object()
            .map_or(0, |paths| paths.values().filter_map(Value::as_u64).sum())
    }

    /// `GET /stats`.
    async fn stats(&self) -> Value {
        client()
            .get(self.url("/stats"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// `Σ (balance + held)`.
    pub async fn total(&self) -> i64 {
        let books: Value = client()
            .get(self.url("/accounts"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        books["total"].as_i64().unwrap()
    }

    /// One account's balance.
    pub async fn balance(&self, account: &str) -> i64 {
        let url = self.url(&format!("/accounts/{account}"));
        let body: Value = client()
            .get(url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["balance"]
            .as_i64()
            .unwrap_or_else(|| panic!("no account {account}: {body}"))
    }

    /// The barrier records, by `saga/step`.
    pub async fn barriers(&self) -> serde_json::Map<String, Value> {
        let body: Value = client()
            .get(self.url("/ledger"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["barriers"].as_object().cloned().unwrap_or_default()
    }

    /// The last business requests the bank received (method, path, saga headers, body).
    pub async fn requests(&self, path: &str) -> Vec<Value> {
        self.request_log()
            .await
            .0
            .into_iter()
            .filter(|r| r["path"] == path)
            .collect()
    }

    /// The whole request log (each entry numbered by arrival in `seq`), and how many business
    /// requests arrived in all.
    pub async fn request_log(&self) -> (Vec<Value>, u64) {
        let log: Value = client()
            .get(self.url("/_requests"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let entries = log["requests"].as_array().cloned().unwrap_or_default();
        (entries, log["received"].as_u64().unwrap_or(0))
    }

    /// Sets a balance.
    pub async fn set_balance(&self, account: &str, balance: i64) {
        let url = self.url(&format!("/accounts/{account}"));
        client()
            .put(url)
            .json(&json!({ "balance": balance }))
            .send()
            .await
            .unwrap();
    }
}

fn spawn(port: u16, accounts: &[String], data: Option<&std::path::Path>) -> Child {
    let mut command = Command::new(bin("txgate-bank"));
    command
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--name")
        .arg(format!("bank-{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if !accounts.is_empty() {
        command.arg("--accounts").arg(accounts.join(","));
    }
    if let Some(data) = data {
        command.arg("--data").arg(data);
    }
    command.spawn().expect("start txgate-bank")
}

impl Drop for Bank {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
