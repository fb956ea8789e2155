//! A real browser for the console's tests: Debian's headless `chromium`, driven through
//! `chromedriver` (WebDriver) on a free loopback port. `tests/run` installs both when missing.
//! The driver and the browser it starts share a process group, killed when this is dropped.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder};
use serde_json::json;

use super::{free_port, wait_until};

/// A browser session; the driver and its browser die with it.
pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless chromium with a fresh profile, laptop-sized.
    pub async fn start() -> Self {
        Self::sized(1280, 900).await
    }

    /// As [`Browser::start`], with a window of `width` by `height` CSS pixels.
    pub async fn sized(width: u32, height: u32) -> Self {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("chromedriver (tests/run installs chromium-driver)");
        let url = format!("http://127.0.0.1:{port}");
        wait_until(Duration::from_secs(20), "chromedriver to listen", || {
            let status = format!("{url}/status");
            async move { reqwest::get(status).await.is_ok() }
        })
        .await;
        let profile = tempfile::tempdir().expect("a browser profile dir");
        let args = [
            "--headless=new".to_string(),
            // Tests run as root in a container, where chromium's sandbox cannot start.
            "--no-sandbox".to_string(),
            "--disable-gpu".to_string(),
            "--disable-dev-shm-usage".to_string(),
            "--hide-scrollbars".to_string(),
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let capabilities = json!({
            "goog:chromeOptions": { "binary": chromium(), "args": args }
        });
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities.as_object().expect("an object").clone())
            .connect(&url)
            .await
            .expect("a chromium session");
        Self {
            client,
            driver,
            _profile: profile,
        }
    }

    /// Ends the session (the browser quits), then the driver.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

/// Debian installs the browser as `chromium`.
fn chromium() -> &'static str {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|path| std::path::Path::new(path).exists())
        .unwrap_or("chromium")
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The whole group: the driver, and a browser it left behind if the test panicked.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.driver.id())])
            .status();
        let _ = self.driver.wait();
    }
}
