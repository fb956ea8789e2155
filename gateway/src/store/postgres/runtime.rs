//! The store's own runtime: one thread running a current-thread tokio runtime, on which every
//! database connection is made and driven (see `connect.rs`), so that no worker thread of the
//! gateway ever owns a database socket, and start-up can wait for the database from outside any
//! runtime.

use std::thread::JoinHandle;

use tokio::runtime::Handle;

use crate::error::{Error, ErrorKind};

/// Starts the store's runtime thread.
pub(super) fn runtime() -> Result<(Handle, JoinHandle<()>), Error> {
    let (sender, receiver) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("txgate-postgres".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("the store's runtime");
            let _ = sender.send(runtime.handle().clone());
            runtime.block_on(std::future::pending::<()>());
        })
        .map_err(|e| {
            Error::new(ErrorKind::Internal, "cannot start the store's thread").with_cause(e)
        })?;
    let handle = receiver
        .recv()
        .map_err(|_| Error::new(ErrorKind::Internal, "the store's thread did not start"))?;
    Ok((handle, thread))
}

/// Runs a future on the store's runtime and waits for it from a thread outside any runtime.
pub(super) trait BlockOnSpawned {
    fn block_on_spawned<T: Send + 'static>(
        &self,
        future: impl std::future::Future<Output = T> + Send + 'static,
    ) -> T;
}

impl BlockOnSpawned for Handle {
    fn block_on_spawned<T: Send + 'static>(
        &self,
        future: impl std::future::Future<Output = T> + Send + 'static,
    ) -> T {
        let (sender, receiver) = std::sync::mpsc::channel();
        self.spawn(async move {
            let _ = sender.send(future.await);
        });
        receiver
            .recv()
            .expect("the store's runtime runs for the life of the process")
    }
}
