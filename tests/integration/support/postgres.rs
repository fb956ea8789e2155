//! A private PostgreSQL for one test: `initdb` and `pg_ctl` run as the `postgres` user, in a temp
//! directory, on a free loopback port, stopped (immediately) when dropped. Nothing is shared
//! with any other test or with a database the machine may run.

use std::path::PathBuf;
use std::process::{Command, Output};

use super::free_port;

/// A running cluster.
pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

/// The newest installed server's `bin` directory (Debian keeps it out of `PATH`).
fn bin_dir() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed (apt-get install -y postgresql)")
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").exists())
        .collect();
    found.sort();
    found.pop().expect("a PostgreSQL server with initdb")
}

fn as_postgres(program: &PathBuf, args: &[&str]) -> Output {
    let output = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(program)
        .args(args)
        .output()
        .expect("run as the postgres user");
    assert!(
        output.status.success(),
        "{} {args:?} failed: {}",
        program.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

impl Postgres {
    /// Creates and starts a cluster with a `txgate` superuser and trust authentication.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let chown = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir.path())
            .status()
            .expect("chown");
        assert!(
            chown.success(),
            "the tests run as root, to hand the directory to postgres"
        );
        let bin = bin_dir();
        let data = dir.path().join("data");
        as_postgres(
            &bin.join("initdb"),
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "txgate",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        let cluster = Self {
            port: free_port(),
            dir,
            bin,
        };
        cluster.pg_ctl(&["start", "-w"]);
        cluster
    }

    fn pg_ctl(&self, command: &[&str]) {
        let data = self.dir.path().join("data");
        let log = self.dir.path().join("server.log");
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        let mut args = vec![
            "-D",
            data.to_str().unwrap(),
            "-l",
            log.to_str().unwrap(),
            "-o",
            &options,
        ];
        args.extend_from_slice(command);
        as_postgres(&self.bin.join("pg_ctl"), &args);
    }

    /// The URL gateways connect with.
    pub fn url(&self) -> String {
        format!("postgres://txgate@127.0.0.1:{}/postgres", self.port)
    }

    /// `pg_ctl restart -m immediate`: the server stops without a checkpoint, as in a crash, and
    /// starts again (recovering from its WAL; `UNLOGGED` tables come back empty).
    pub fn restart_immediately(&self) {
        self.pg_ctl(&["restart", "-m", "immediate", "-w"]);
    }

    /// `pg_ctl stop -m immediate`: the database is gone until [`Postgres::start_again`].
    pub fn stop_immediately(&self) {
        self.pg_ctl(&["stop", "-m", "immediate", "-w"]);
    }

    /// Starts a stopped cluster again, on the same port.
    pub fn start_again(&self) {
        self.pg_ctl(&["start", "-w"]);
    }

    /// Locks the rows `select` finds (`... FOR UPDATE`) in a transaction of its own, held until the
    /// lock is dropped: a DBA's open transaction, or a row another session is busy with.
    pub async fn lock_rows(&self, select: &str) -> RowLock {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        let mut child = tokio::process::Command::from(self.psql())
            .arg("-q")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("run psql");
        let mut stdin = child.stdin.take().expect("psql's stdin");
        let script = format!("BEGIN;\n{select} FOR UPDATE;\n\\echo locked\n");
        stdin.write_all(script.as_bytes()).await.unwrap();
        let mut lines = BufReader::new(child.stdout.take().expect("psql's stdout")).lines();
        while let Some(line) = lines.next_line().await.unwrap() {
            if line == "locked" {
                return RowLock { child, stdin };
            }
        }
        panic!("psql ended before it held the lock");
    }

    /// `psql` on this cluster's database, unaligned, tuples only.
    fn psql(&self) -> Command {
        let mut psql = Command::new(self.bin.join("psql"));
        psql.args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "txgate", "-d", "postgres", "-XAt"]);
        psql
    }

    /// Runs one SQL statement with `psql`; returns its unaligned output.
    pub fn sql(&self, statement: &str) -> String {
        let output = self
            .psql()
            .args(["-c", statement])
            .output()
            .expect("run psql");
        assert!(
            output.status.success(),
            "psql: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }
}

/// Rows locked by a transaction of their own, until [`RowLock::release`] or drop.
pub struct RowLock {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
}

impl RowLock {
    /// Ends the transaction (rolled back): the rows are free.
    pub async fn release(mut self) {
        use tokio::io::AsyncWriteExt;
        let _ = self.stdin.write_all(b"ROLLBACK;\n\\q\n").await;
        let _ = self.child.wait().await;
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args(["-D", data.to_str().unwrap(), "stop", "-m", "immediate"])
            .output();
    }
}
