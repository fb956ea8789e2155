//! Starts real processes for the tests: demo banks and gateways, each on free loopback ports,
//! killed when dropped. Nothing here is mocked.

mod bank;
mod blackhole;
mod browser;
mod fleet;
mod gateway;
pub mod postgres;
pub mod raw;
mod tmpfs;

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use bank::Bank;
pub use blackhole::Blackhole;
pub use browser::Browser;
pub use fleet::Fleet;
pub use gateway::{Gateway, GatewayBuilder};
pub use tmpfs::Tmpfs;

/// A built workspace binary (`txgate`, `txgate-bank`), next to this test executable.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace first (cargo build --workspace)",
        path.display()
    );
    path
}

/// Ports handed to the processes the tests start: below Linux's ephemeral range (32768 and
/// up), where the kernel picks the local port of every outgoing connection. A port taken from
/// that range could be given to some test's client socket before the gateway binds it, or
/// between a gateway's stop and its restart on the same port.
const TEST_PORTS: std::ops::Range<u16> = 20_000..32_000;

/// A port that was free a moment ago, from [`TEST_PORTS`], and reserved for this test process.
///
/// Tests run as parallel processes, and a gateway binds its port seconds after the port was
/// picked (it compiles plugins and waits out its id's last lease first). The reservation, a lock
/// on a file named after the port held until this process ends, keeps every other test process
/// from picking the same port in that window.
pub fn free_port() -> u16 {
    for _ in 0..1_000 {
        let port = fastrand::u16(TEST_PORTS);
        if reserve(port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {TEST_PORTS:?} after 1,000 tries");
}

/// Locks the port's file for the rest of this process; false if another process holds it.
fn reserve(port: u16) -> bool {
    static HELD: std::sync::Mutex<Vec<std::fs::File>> = std::sync::Mutex::new(Vec::new());
    let dir = std::env::temp_dir().join("txgate-test-ports");
    std::fs::create_dir_all(&dir).expect("port reservation dir");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(port.to_string()))
        .expect("port reservation file");
    if file.try_lock().is_err() {
        return false;
    }
    HELD.lock().expect("reserved ports").push(file);
    true
}

/// Polls `check` every 20 ms until it holds or `timeout` passes.
pub async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

/// An HTTP client for the tests: no connection reuse surprises, short timeouts.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(8)
        .build()
        .expect("reqwest client")
}
