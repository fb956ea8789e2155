//! The store as it runs: settings read back from the running gateway and from the file itself.

use serde_json::Value;

use crate::sagas::{banks, transfer, transfer_routes};
use crate::support::GatewayBuilder;

#[tokio::test]
async fn the_running_store_is_in_wal_mode_with_full_synchronous() {
    // Proves the settings durability rests on are in force in the running store: its writer's
    // connection reports synchronous = FULL and WAL, and the file's header says WAL too, so a
    // build that dropped either could not pass unseen.
    let (a, b) = banks().await;
    let gateway = GatewayBuilder::new(transfer_routes(&a, &b, ""))
        .start()
        .await;
    let (status, _) = transfer(&gateway, "/transfers", "pragmas", "alice", "carol", 1).await;
    assert_eq!(status, 200);
    let store: Value = gateway.admin_json("/admin/store").await;
    assert_eq!(store["synchronous"], "full", "{store}");
    assert_eq!(store["journal_mode"], "wal", "{store}");
    assert_eq!(store["usage"]["sagas"]["keys"], 1, "{store}");
    let header = std::fs::read(gateway.store_dir().join("txgate.db")).unwrap();
    // Bytes 18 and 19 of a SQLite file are its read and write format versions: 2 means WAL.
    assert_eq!(&header[18..20], &[2, 2], "the file is in WAL mode");
    assert!(gateway.store_dir().join("txgate.db-wal").exists());
}
