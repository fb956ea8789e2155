//! Running the gateway: bind the client and admin listeners, start serving, and stop gracefully on
//! SIGTERM or SIGINT.

pub mod listener;
pub mod router;
mod tls;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::admin::Admin;
use crate::config::Config;
use crate::error::{Error, ErrorKind};
use crate::gateway::Gateway;
use crate::metrics::Metrics;
use listener::ListenerLimits;

/// Admin connections at once: operators and scrapers, never a crowd.
const ADMIN_CONNECTIONS_MAX: usize = 64;

/// Serves until SIGTERM or SIGINT, then drains within `shutdown_grace_ms`.
pub async fn serve(config: Config) -> Result<(), Error> {
    let metrics = Arc::new(Metrics::new());
    let tls = match &config.server.tls {
        Some(tls) => Some(tls::acceptor(
            &config.resolve(&tls.cert),
            &config.resolve(&tls.key),
        )?),
        None => None,
    };
    let gateway = Arc::new(Gateway::new(config, metrics)?);
    let server = gateway.config().server.clone();
    let client_listener = bind(server.listen, "server.listen").await?;
    let admin_listener = bind(server.admin_listen, "server.admin_listen").await?;
    tracing::info!(
        listen = %server.listen,
        admin = %server.admin_listen,
        tls = tls.is_some(),
        "txgate serving"
    );
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(watch_signals(stop_tx));
    let limits = ListenerLimits {
        connections_max: server.max_connections as usize,
        header_read_timeout: Duration::from_millis(server.header_read_timeout_ms),
        header_bytes_max: usize::try_from(server.max_header_bytes).unwrap_or(usize::MAX),
        shutdown_grace: Duration::from_millis(server.shutdown_grace_ms),
    };
    let admin_limits = ListenerLimits {
        connections_max: ADMIN_CONNECTIONS_MAX,
        ..limits.clone()
    };
    let admin = tokio::spawn(listener::serve(
        admin_listener,
        Arc::new(Admin::new(gateway.clone())),
        None,
        admin_limits,
        stop_rx.clone(),
    ));
    gateway.set_ready(true);
    let cut = listener::serve(client_listener, gateway.clone(), tls, limits, stop_rx).await;
    gateway.set_ready(false);
    let _ = admin.await;
    tracing::info!(connections_cut = cut, "txgate stopped");
    Ok(())
}

async fn bind(addr: std::net::SocketAddr, key: &str) -> Result<TcpListener, Error> {
    TcpListener::bind(addr).await.map_err(|e| {
        Error::new(
            ErrorKind::Internal,
            format!("cannot listen on {addr} ({key})"),
        )
        .with_cause(e)
    })
}

async fn watch_signals(stop: watch::Sender<bool>) {
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop the gateway with SIGKILL");
        return;
    };
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    tracing::info!(
        signal = name,
        "shutting down: no new connections, letting requests finish"
    );
    let _ = stop.send(true);
}
