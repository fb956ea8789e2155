//! What the fleet's store does beside the requests, every quarter lease: renew the lease through
//! the presence connection first (it never waits behind anything else), then this gateway's
//! holds, then read the namespaces' usage.

use std::future::Future;

use super::Postgres;
use super::deadline::within;

impl Postgres {
    /// The lease loop, for as long as the process runs.
    pub(super) fn lease_loop(&self) -> impl Future<Output = ()> + Send + 'static {
        let (lease, presence, pool) =
            (self.lease.clone(), self.presence.clone(), self.pool.clone());
        let (usage, holds, metrics) =
            (self.usage.clone(), self.holds.clone(), self.metrics.clone());
        let (gateway, every, lease_ms) = (
            self.gateway.clone(),
            self.settings.lease / 4,
            self.lease_ms(),
        );
        async move {
            loop {
                tokio::time::sleep(every).await;
                match presence.renew(&lease).await {
                    Ok(took) => {
                        if let Some(metrics) = &metrics {
                            metrics.lease_renewal(took);
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, "the lease was not renewed");
                        continue;
                    }
                }
                if let Err(error) = within(holds.renew(&pool, &gateway, lease_ms)).await {
                    tracing::debug!(%error, "holds were not renewed");
                }
                if let Err(error) = usage.refresh(&pool).await {
                    tracing::debug!(%error, "the namespaces' usage was not read");
                }
            }
        }
    }
}
