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

#[tokio::test]
async fn the_store_writer_runs_ahead_of_the_request_workers() {
    // Every durable write waits for the writer's commit, so the writer asks for a higher
    // priority than the workers (nice -10). Raising a priority needs CAP_SYS_NICE (or a high
    // enough RLIMIT_NICE); a gateway refused it must say so in its log and run the writer at
    // the workers' priority. Either way, the writer is never behind the workers.
    let (a, b) = banks().await;
    let gateway = GatewayBuilder::new(transfer_routes(&a, &b, ""))
        .start()
        .await;
    let (status, _) = transfer(&gateway, "/transfers", "nice", "alice", "carol", 1).await;
    assert_eq!(status, 200);
    let nice_of = |name: &str| -> Vec<i64> {
        let tasks = std::fs::read_dir(format!("/proc/{}/task", gateway.pid())).unwrap();
        tasks
            .flatten()
            .filter(|task| {
                std::fs::read_to_string(task.path().join("comm"))
                    .unwrap_or_default()
                    .trim()
                    == name
            })
            .map(|task| {
                let stat = std::fs::read_to_string(task.path().join("stat")).unwrap();
                // Field 19 of stat is the nice value; the name in field 2 may hold spaces, so
                // count from the closing parenthesis.
                let after_name = &stat[stat.rfind(')').unwrap() + 2..];
                after_name.split(' ').nth(16).unwrap().parse().unwrap()
            })
            .collect()
    };
    let writer = nice_of("txgate-store");
    let workers = nice_of("txgate-worker-0");
    assert_eq!(writer.len(), 1, "one writer thread");
    assert_eq!(workers.len(), 1, "worker 0");
    if writer[0] == -10 {
        assert!(writer[0] < workers[0], "ahead of the workers");
    } else {
        assert_eq!(writer[0], workers[0], "refused: as the workers");
        assert!(
            gateway
                .log()
                .contains("the store's writer runs at normal priority"),
            "a refused priority is logged:\n{}",
            gateway.log()
        );
    }
}
