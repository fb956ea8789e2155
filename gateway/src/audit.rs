//! The audit stream (SPEC §5): one JSON line per event, to `[audit] file` or, when none is set,
//! to the `txgate::audit` log target.
//!
//! Everything in a line but `fields` comes from the gateway: the time, the gateway, the plugin,
//! and the request or saga the event is about. A plugin names its event and gives its fields,
//! and cannot forge who or what the event is about.
//!
//! Lines go to the file through a bounded queue and one writer thread, so a slow disk never
//! holds a request's worker; a full queue drops the line and counts it
//! (`txgate_audit_events_dropped_total`), because an audit line must never make a transfer
//! wait or fail.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

use serde::Serialize;
use serde_json::value::RawValue;

use crate::error::{Error, ErrorKind};
use crate::metrics::Metrics;

/// Lines waiting for the writer thread.
const QUEUE_LINES_MAX: usize = 65_536;
/// Lines written between two flushes, at most.
const BATCH_LINES_MAX: usize = 1024;

/// What an event is about, as the gateway knows it.
#[derive(Debug, Clone, Default)]
pub struct Subject {
    /// The request's `X-Request-ID`.
    pub request_id: Option<String>,
    /// The route.
    pub route: Option<String>,
    /// The client, as the route's `client_key` names it.
    pub client: Option<String>,
    /// The saga, on a saga route once it exists.
    pub saga_id: Option<String>,
}

#[derive(Serialize)]
struct Line<'a> {
    ts: String,
    gateway: &'a str,
    plugin: &'a str,
    event: &'a str,
    request_id: Option<&'a str>,
    route: Option<&'a str>,
    client: Option<&'a str>,
    saga_id: Option<&'a str>,
    fields: &'a RawValue,
}

enum Sink {
    Log,
    File(SyncSender<String>),
}

/// The process's audit stream.
pub struct AuditLog {
    gateway: Arc<str>,
    sink: Sink,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("gateway", &self.gateway)
            .finish()
    }
}

impl AuditLog {
    /// Opens the stream: appends to `file` (created if absent), or logs when `file` is none.
    pub fn open(file: Option<&Path>, gateway: &str, metrics: Arc<Metrics>) -> Result<Self, Error> {
        let sink = match file {
            None => Sink::Log,
            Some(path) => Sink::File(spawn_writer(path)?),
        };
        Ok(Self {
            gateway: gateway.into(),
            sink,
            metrics,
        })
    }

    /// Writes one event. `fields` is already checked to be a JSON object.
    pub fn write(&self, plugin: &str, event: &str, subject: &Subject, fields: &RawValue) {
        let line = Line {
            ts: now_rfc3339(),
            gateway: &self.gateway,
            plugin,
            event,
            request_id: subject.request_id.as_deref(),
            route: subject.route.as_deref(),
            client: subject.client.as_deref(),
            saga_id: subject.saga_id.as_deref(),
            fields,
        };
        let text = serde_json::to_string(&line).expect("an audit line always serializes");
        self.metrics.audit_event(plugin, event);
        match &self.sink {
            Sink::Log => tracing::info!(target: "txgate::audit", "{text}"),
            Sink::File(queue) => match queue.try_send(text) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => self.metrics.audit_dropped("queue full"),
                Err(TrySendError::Disconnected(_)) => self.metrics.audit_dropped("writer gone"),
            },
        }
    }
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Opens the file now (so a bad path is a start-up error naming it) and starts its writer.
fn spawn_writer(path: &Path) -> Result<SyncSender<String>, Error> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| {
            Error::new(
                ErrorKind::Internal,
                format!("`audit.file`: cannot open {}: {e}", path.display()),
            )
        })?;
    let (sender, receiver) = sync_channel(QUEUE_LINES_MAX);
    let path = path.to_path_buf();
    std::thread::Builder::new()
        .name("txgate-audit".into())
        .spawn(move || write_lines(BufWriter::new(file), &receiver, &path))
        .map_err(|e| {
            Error::new(
                ErrorKind::Internal,
                format!("cannot start the audit writer: {e}"),
            )
        })?;
    Ok(sender)
}

/// Writes lines as they come: waits for one, takes whatever else is already queued (up to
/// [`BATCH_LINES_MAX`]), then flushes, so a line reaches the file promptly and a burst costs
/// one write.
fn write_lines(mut out: BufWriter<File>, lines: &Receiver<String>, path: &Path) {
    let mut failed = false;
    while let Ok(first) = lines.recv() {
        let batch = std::iter::once(first).chain(lines.try_iter().take(BATCH_LINES_MAX));
        let mut result = Ok(());
        for line in batch {
            result = result
                .and_then(|()| out.write_all(line.as_bytes()))
                .and_then(|()| out.write_all(b"\n"));
        }
        let result = result.and_then(|()| out.flush());
        // Logged once per failing stretch, not once per line: a full disk says so once, and
        // again only after it has recovered and failed anew.
        match result {
            Err(error) if !failed => {
                failed = true;
                tracing::error!(%error, path = %path.display(), "cannot write the audit file");
            }
            Ok(()) => failed = false,
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn fields(text: &str) -> Box<RawValue> {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn each_event_is_one_line_tagged_by_the_gateway() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let metrics = Arc::new(Metrics::new());
        let log = AuditLog::open(Some(&path), "gw-1", metrics.clone()).unwrap();
        let subject = Subject {
            request_id: Some("r-1".into()),
            route: Some("transfers".into()),
            client: Some("alice".into()),
            saga_id: None,
        };
        // A plugin's own `request_id` stays inside its fields: the line's is the gateway's.
        log.write(
            "audit",
            "request",
            &subject,
            &fields(r#"{"request_id":"forged"}"#),
        );
        log.write("audit", "request", &Subject::default(), &fields("{}"));
        drop(log);
        let text = (0..200)
            .map(|_| {
                std::thread::sleep(Duration::from_millis(10));
                std::fs::read_to_string(&path).unwrap()
            })
            .find(|text| text.lines().count() == 2)
            .expect("two lines written");
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(lines[0]["gateway"], "gw-1");
        assert_eq!(lines[0]["plugin"], "audit");
        assert_eq!(lines[0]["event"], "request");
        assert_eq!(lines[0]["request_id"], "r-1");
        assert_eq!(lines[0]["client"], "alice");
        assert!(lines[0]["saga_id"].is_null());
        assert_eq!(lines[0]["fields"]["request_id"], "forged");
        assert!(lines[1]["request_id"].is_null());
        assert!(lines[0]["ts"].as_str().unwrap().ends_with('Z'));
        assert!(
            metrics
                .encode()
                .contains("txgate_audit_events_total{plugin=\"audit\",event=\"request\"} 2")
        );
    }

    #[test]
    fn an_unwritable_audit_file_is_an_error_naming_the_key() {
        let metrics = Arc::new(Metrics::new());
        let error = AuditLog::open(Some(Path::new("/nonexistent/dir/audit.log")), "gw", metrics)
            .unwrap_err();
        assert!(error.to_string().contains("audit.file"), "{error}");
    }
}
