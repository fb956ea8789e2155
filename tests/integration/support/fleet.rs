//! A fleet for one test: a private PostgreSQL and gateways `gw1`, `gw2`, … on it, all with the
//! same config, started together.

use futures_util::future::join_all;

use super::postgres::Postgres;
use super::{Gateway, GatewayBuilder};

/// The database and its gateways; everything stops when dropped.
pub struct Fleet {
    /// The gateways, `gw1` first.
    pub gateways: Vec<Gateway>,
    /// The shared database (dropped last: gateways stop first).
    pub db: Postgres,
}

impl Fleet {
    /// Starts `count` gateways with `body` and the `[server]` lines, each with a lease of
    /// `lease_ms`.
    pub async fn start(count: usize, lease_ms: u64, body: &str, server: &[&str]) -> Self {
        let db = Postgres::start();
        let gateways = join_all((1..=count).map(|n| {
            let mut builder =
                GatewayBuilder::new(body).fleet(&db.url(), &format!("gw{n}"), lease_ms);
            for line in server {
                builder = builder.server(line);
            }
            builder.start()
        }))
        .await;
        Self { gateways, db }
    }

    /// Gateway `gw<n>` (1-based).
    pub fn gw(&self, n: usize) -> &Gateway {
        &self.gateways[n - 1]
    }

    /// Gateway `gw<n>`, to kill, pause or restart.
    pub fn gw_mut(&mut self, n: usize) -> &mut Gateway {
        &mut self.gateways[n - 1]
    }

    /// How many sagas of the fleet are not finished, from the database itself.
    pub fn unfinished(&self) -> u64 {
        self.db
            .sql("SELECT count(*) FROM sagas WHERE expires_at_ms IS NULL")
            .parse()
            .unwrap_or(u64::MAX)
    }
}
