//! Running the gateway: bind the client and admin listeners, start serving, and stop gracefully on
//! SIGTERM or SIGINT.

pub mod listener;
mod parse_errors;
pub mod router;
mod tls;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, watch};

use crate::admin::Admin;
use crate::config::Config;
use crate::error::{Error, ErrorKind};
use crate::gateway::Gateway;
use crate::metrics::Metrics;
use listener::{ListenerLimits, Slots};

/// Admin connections at once: operators and scrapers, never a crowd.
const ADMIN_CONNECTIONS_MAX: usize = 64;

/// Serves until SIGTERM or SIGINT, then drains within `shutdown_grace_ms`.
///
/// The client port is served by one thread per core, each with its own single-threaded runtime
/// and its own upstream connections (see `upstream::pool`). Worker 0 also accepts every
/// connection and hands them out round-robin, and watches for signals. The admin API has a
/// thread of its own: an operator's slow listing never holds up a client's request, nor a
/// flood of clients an operator's probe.
pub fn serve(config: Config) -> Result<(), Error> {
    let workers = worker_count(config.server.workers);
    crate::worker::set_count(workers);
    let metrics = Arc::new(Metrics::new());
    let tls = match &config.server.tls {
        Some(tls) => Some(tls::acceptor(
            &config.resolve(&tls.cert),
            &config.resolve(&tls.key),
        )?),
        None => None,
    };
    let gateway = Arc::new(Gateway::new(config, metrics, workers)?);
    let server = gateway.config().server.clone();
    let client_listener = bind(server.listen, "server.listen")?;
    let admin_listener = bind(server.admin_listen, "server.admin_listen")?;
    tracing::info!(
        listen = %server.listen,
        admin = %server.admin_listen,
        tls = tls.is_some(),
        workers,
        "txgate serving"
    );
    let limits = ListenerLimits {
        header_read_timeout: Duration::from_millis(server.header_read_timeout_ms),
        header_bytes_max: usize::try_from(server.max_header_bytes).unwrap_or(usize::MAX),
        header_count_max: server.max_header_count as usize,
        shutdown_grace: Duration::from_millis(server.shutdown_grace_ms),
    };
    let (queues, mut receivers): (Vec<_>, Vec<_>) =
        (0..workers).map(|_| mpsc::unbounded_channel()).unzip();
    let mut front = Some(Front {
        client: client_listener,
        queues,
        slots: Slots::new(
            server.max_connections as usize,
            server.max_connections_per_client,
        ),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let stop_signal = stop_tx.clone();
    let admin = spawn_admin(
        admin_listener,
        gateway.clone(),
        limits.clone(),
        stop_rx.clone(),
    )?;
    let mut stop_tx = Some(stop_tx);
    let mut threads = Vec::with_capacity(workers);
    let jobs = gateway.take_job_queues();
    for ((index, queue), jobs) in receivers.drain(..).enumerate().zip(jobs) {
        let worker = Worker {
            index,
            jobs,
            gateway: gateway.clone(),
            queue,
            front: front.take(),
            stop_tx: stop_tx.take(),
            stop: stop_rx.clone(),
            tls: tls.clone(),
            limits: limits.clone(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("txgate-worker-{index}"))
            .spawn(move || worker.run())
            .map_err(io_error("worker thread"))?;
        threads.push(thread);
    }
    let started = gateway.start_up();
    match &started {
        Ok(()) => gateway.set_ready(true),
        Err(error) => {
            tracing::error!(%error, "start-up failed; stopping");
            let _ = stop_signal.send(true);
        }
    }
    let mut cut = 0;
    for thread in threads.into_iter().chain([admin]) {
        cut += thread
            .join()
            .map_err(|_| Error::new(ErrorKind::Internal, "a server thread panicked"))??;
    }
    gateway.set_ready(false);
    gateway.close();
    started?;
    tracing::info!(connections_cut = cut, "txgate stopped");
    Ok(())
}

/// What worker 0 runs besides its share of connections: the acceptor.
struct Front {
    client: std::net::TcpListener,
    queues: Vec<mpsc::UnboundedSender<listener::Accepted>>,
    slots: Slots,
}

/// One thread's share of the client connections.
struct Worker {
    index: usize,
    jobs: mpsc::UnboundedReceiver<crate::worker::Job>,
    gateway: Arc<Gateway>,
    queue: mpsc::UnboundedReceiver<listener::Accepted>,
    front: Option<Front>,
    stop_tx: Option<watch::Sender<bool>>,
    stop: watch::Receiver<bool>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    limits: ListenerLimits,
}

impl Worker {
    fn run(self) -> Result<usize, Error> {
        crate::worker::set_index(self.index);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(io_error("tokio runtime"))?;
        runtime.block_on(async move {
            tokio::spawn(crate::worker::run_jobs(self.jobs));
            if let Some(stop_tx) = self.stop_tx {
                tokio::spawn(watch_signals(stop_tx, self.gateway.clone()));
            }
            if let Some(front) = self.front {
                start_acceptor(front, &self.gateway, &self.stop)?;
            }
            Ok(listener::serve(self.queue, self.gateway, self.tls, self.limits).await)
        })
    }
}

/// Starts the client acceptor on the current worker.
fn start_acceptor(
    front: Front,
    gateway: &Arc<Gateway>,
    stop: &watch::Receiver<bool>,
) -> Result<(), Error> {
    let client = TcpListener::from_std(front.client).map_err(io_error("server.listen"))?;
    tokio::spawn(listener::accept(
        client,
        gateway.ready_watch(),
        front.queues,
        front.slots,
        stop.clone(),
    ));
    Ok(())
}

/// The admin API on a thread of its own, with its own runtime, until the stop.
fn spawn_admin(
    socket: std::net::TcpListener,
    gateway: Arc<Gateway>,
    limits: ListenerLimits,
    stop: watch::Receiver<bool>,
) -> Result<std::thread::JoinHandle<Result<usize, Error>>, Error> {
    let serve = move || {
        lower_priority();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            // Its blocking threads too: the store's reads for a listing run there.
            .on_thread_start(lower_priority)
            .build()
            .map_err(io_error("tokio runtime"))?;
        runtime.block_on(async move {
            let admin = TcpListener::from_std(socket).map_err(io_error("server.admin_listen"))?;
            let (queue, receiver) = mpsc::unbounded_channel();
            let connections = Slots::new(ADMIN_CONNECTIONS_MAX, u32::MAX);
            let always = watch::channel(true).1;
            tokio::spawn(listener::accept(
                admin,
                always,
                vec![queue],
                connections,
                stop,
            ));
            let handler = Arc::new(Admin::new(gateway));
            Ok(listener::serve(receiver, handler, None, limits).await)
        })
    };
    std::thread::Builder::new()
        .name("txgate-admin".into())
        .spawn(serve)
        .map_err(io_error("admin thread"))
}

/// The admin thread's nice value: an operator's pages (a listing reads and renders a hundred
/// sagas) wait for a CPU behind the workers serving clients, so watching the fleet never slows
/// it. Measured with `bench/console.sh` on the 2-core machine, an operator reloading the list
/// without pause under full saga load: the saga p99 moved 1.27× at normal priority, 1.09× at 10.
const ADMIN_NICE: i32 = 10;

/// Runs this thread behind the request workers (lowering a priority needs no privilege).
fn lower_priority() {
    let thread = rustix::thread::gettid();
    if let Err(error) = rustix::process::setpriority_process(Some(thread), ADMIN_NICE) {
        tracing::info!(%error, "the admin thread runs at normal priority");
    }
}

/// `0` means one worker per core.
fn worker_count(configured: u32) -> usize {
    match configured {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        n => n as usize,
    }
}

fn bind(addr: std::net::SocketAddr, key: &'static str) -> Result<std::net::TcpListener, Error> {
    let listener = std::net::TcpListener::bind(addr).map_err(|e| {
        Error::new(
            ErrorKind::Internal,
            format!("cannot listen on {addr} ({key})"),
        )
        .with_cause(e)
    })?;
    listener.set_nonblocking(true).map_err(io_error(key))?;
    Ok(listener)
}

fn io_error(what: &'static str) -> impl Fn(std::io::Error) -> Error {
    move |e| Error::new(ErrorKind::Internal, what).with_cause(e)
}

/// SIGTERM and SIGINT stop the gateway; SIGHUP reloads the config.
async fn watch_signals(stop: watch::Sender<bool>, gateway: Arc<Gateway>) {
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::error!("cannot install signal handlers; stop the gateway with SIGKILL");
        return;
    };
    let name = loop {
        tokio::select! {
            _ = term.recv() => break "SIGTERM",
            _ = int.recv() => break "SIGINT",
            _ = hup.recv() => {
                let gateway = gateway.clone();
                tokio::task::spawn_blocking(move || log_reload(&gateway, "SIGHUP"));
            }
        }
    };
    tracing::info!(
        signal = name,
        "shutting down: no new connections, letting requests finish"
    );
    let _ = stop.send(true);
}

/// Reloads the config and logs the outcome (SIGHUP has no one to answer).
fn log_reload(gateway: &Gateway, trigger: &str) {
    match gateway.reload() {
        Ok(reloaded) => tracing::info!(
            trigger,
            version = reloaded.version,
            routes = ?reloaded.routes,
            plugins = ?reloaded.plugins,
            elapsed_ms = reloaded.elapsed.as_millis() as u64,
            "config reloaded"
        ),
        Err(error) => {
            tracing::error!(trigger, %error, "reload refused; the running config stays")
        }
    }
}
