//! Connections to the fleet's database. Every connection is made, and its driver runs, on the
//! store's own runtime thread, so no worker thread ever owns a database socket; workers reach it
//! through the client's channel. A pool (deadpool) keeps them; statements are prepared once per
//! connection and cached.

use std::time::Duration;

use deadpool_postgres::{Connect, Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio::runtime::Handle;
use tokio::task::JoinHandle;
use tokio_postgres::{Client, Config, NoTls};

use super::deadline::{TCP_USER_TIMEOUT, within};
use super::schema::{self, Migrated};
use crate::error::{Error, ErrorKind};

/// Connections the pool keeps at most (the presence and notification connections are apart).
const POOL_CONNECTIONS_MAX: usize = 16;
/// How long a connection may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a caller waits for a free connection.
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(5);

/// The database's address, as an operator can act on it (never the password).
pub(super) fn describe(config: &Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(host) => host.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "postgres://{}:{port}/{}",
        hosts.join(","),
        config.get_dbname().unwrap_or("")
    )
}

/// What a session of the gateway's asks of the server.
#[derive(Debug, Clone, Copy)]
pub(super) struct Session {
    /// A transaction left open longer than this is ended by the server: a gateway paused in the
    /// middle of one (SIGSTOP, a stalled VM) must not keep its row locks, or the fleet could
    /// neither take its sagas over nor claim the keys it was claiming.
    pub(super) idle_in_transaction: Duration,
    /// The server cancels a statement that runs longer (`None`: a migration, which may count a
    /// large table).
    pub(super) statement_timeout: Option<Duration>,
}

/// Parses `url` and names this gateway to the database (`application_name`). Every session
/// commits synchronously whatever the server's default (an acknowledged write is on the
/// database's disk), keeps its statements and idle transactions short, and has both ends probe a
/// silent peer: the server ends the session of a gateway that vanished, releasing what it held,
/// and the gateway closes a connection the network stopped carrying (see `deadline.rs`).
pub(super) fn config(url: &str, gateway: &str, session: Session) -> Result<Config, Error> {
    let mut config: Config = url.parse().map_err(|e| {
        Error::new(
            ErrorKind::Config,
            format!("store.url: not a PostgreSQL URL ({e})"),
        )
    })?;
    let mut ours = format!(
        "-c synchronous_commit=on -c idle_in_transaction_session_timeout={} \
         -c tcp_keepalives_idle=2 -c tcp_keepalives_interval=1 -c tcp_keepalives_count=3",
        session.idle_in_transaction.as_millis().max(1)
    );
    if let Some(timeout) = session.statement_timeout {
        ours.push_str(&format!(
            " -c statement_timeout={}",
            timeout.as_millis().max(1)
        ));
    }
    let options = match config.get_options() {
        Some(given) => format!("{given} {ours}"),
        None => ours,
    };
    config
        .application_name(format!("txgate {gateway}"))
        .options(options)
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_user_timeout(TCP_USER_TIMEOUT)
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(2))
        .keepalives_interval(Duration::from_secs(1))
        .keepalives_retries(3);
    Ok(config)
}

/// Opens one connection on `runtime` and drives it there.
pub(super) async fn open(
    config: Config,
    runtime: Handle,
) -> Result<(Client, JoinHandle<()>), tokio_postgres::Error> {
    let driver = runtime.clone();
    let opened = runtime
        .spawn(async move {
            let (client, connection) = config.connect(NoTls).await?;
            let task = driver.spawn(async move {
                if let Err(error) = connection.await {
                    tracing::debug!(%error, "database connection ended");
                }
            });
            Ok::<_, tokio_postgres::Error>((client, task))
        })
        .await;
    match opened {
        Ok(result) => result,
        // The store's runtime is gone (the process is stopping): never connect; the caller's
        // own timeout ends the wait.
        Err(_) => std::future::pending().await,
    }
}

/// Connects once and creates or migrates the schema: at start, and for `txgate migrate`. An
/// unreachable database is an error that names it (never its password) and the key to fix.
pub(super) async fn open_and_migrate(config: Config) -> Result<Migrated, Error> {
    let database = describe(&config);
    let (mut client, _driver) = open(config, Handle::current()).await.map_err(|e| {
        Error::new(
            ErrorKind::Store,
            format!("cannot reach the database {database} (store.url): {e}"),
        )
    })?;
    schema::migrate(&mut client)
        .await
        .map_err(|e| Error::new(ErrorKind::Store, format!("{database}: {e}")))
}

/// Makes the pool's connections on the store's runtime.
struct OnRuntime(Handle);

impl Connect for OnRuntime {
    fn connect(
        &self,
        config: &Config,
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<
                    Output = Result<(Client, JoinHandle<()>), tokio_postgres::Error>,
                > + Send
                + '_,
        >,
    > {
        Box::pin(open(config.clone(), self.0.clone()))
    }
}

/// A setting as a session of the pool has it.
pub(super) async fn setting(pool: &Pool, name: &str) -> Result<String, String> {
    within(async {
        let client = pool.get().await.map_err(|e| e.to_string())?;
        let row = client
            .query_one("SELECT current_setting($1)", &[&name])
            .await
            .map_err(|e| e.to_string())?;
        Ok(row.get(0))
    })
    .await
}

/// The pool.
pub(super) fn pool(config: Config, runtime: Handle) -> Result<Pool, Error> {
    let manager = Manager::from_connect(
        config,
        OnRuntime(runtime),
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(POOL_CONNECTIONS_MAX)
        .wait_timeout(Some(CHECKOUT_TIMEOUT))
        .create_timeout(Some(CONNECT_TIMEOUT))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .map_err(|e| {
            Error::new(ErrorKind::Internal, "cannot build the database pool").with_cause(e)
        })
}
