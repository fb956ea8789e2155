//! LISTEN/NOTIFY: a request that waits on a saga another gateway runs is woken when that saga
//! finishes (`txgate_sagas`, sent in the transaction that finishes it), with no polling; and an
//! operator's retry or resolve reaches the gateway that runs the saga (`txgate_admin`). One
//! dedicated connection listens; when it breaks, it is opened again, and every waiter is woken so
//! that it reads the saga afresh instead of trusting a notification it may have missed.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use futures_util::StreamExt;
use tokio::sync::futures::OwnedNotified;
use tokio::sync::{Notify, mpsc};
use tokio_postgres::{AsyncMessage, Config};

/// How long the listener waits before opening a broken connection again.
const RECONNECT_WAIT: Duration = Duration::from_millis(500);

/// The waiters and the operator requests.
#[derive(Debug, Default)]
pub(super) struct Listener {
    waiters: DashMap<Arc<str>, Arc<Notify>>,
    admin: std::sync::Mutex<Option<mpsc::UnboundedSender<Arc<str>>>>,
}

/// A wait for saga `id`'s notification, registered at once (so one sent before the wait is
/// awaited still counts). However it ends (notified, timed out, or dropped with its request),
/// the waiter's entry goes once nobody else waits on the saga: the map holds the sagas waited
/// on now, never every saga ever followed.
pub(super) struct Waiting<'a> {
    listener: &'a Listener,
    id: Arc<str>,
    notified: Option<Pin<Box<OwnedNotified>>>,
}

impl Waiting<'_> {
    /// Resolves when the saga's notification comes (or the connection was opened again).
    pub(super) async fn notified(&mut self) {
        if let Some(notified) = self.notified.as_mut() {
            notified.as_mut().await;
        }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        // Our share of the waiter first, so that the count below sees only the others.
        self.notified = None;
        self.listener
            .waiters
            .remove_if(&self.id, |_, n| Arc::strong_count(n) == 1);
    }
}

impl Listener {
    /// A registered wait for saga `id`'s notification.
    pub(super) fn wait(&self, id: &str) -> Waiting<'_> {
        let id: Arc<str> = id.into();
        let notify = self
            .waiters
            .entry(id.clone())
            .or_insert_with(|| Arc::new(Notify::new()))
            .clone();
        let mut notified = Box::pin(notify.notified_owned());
        notified.as_mut().enable();
        Waiting {
            listener: self,
            id,
            notified: Some(notified),
        }
    }

    /// How many sagas are waited on now.
    #[cfg(test)]
    pub(super) fn waited_on(&self) -> usize {
        self.waiters.len()
    }

    /// The stream of saga ids an operator asked something of.
    pub(super) fn admin_requests(&self) -> mpsc::UnboundedReceiver<Arc<str>> {
        let (sender, receiver) = mpsc::unbounded_channel();
        *self.admin.lock().expect("admin") = Some(sender);
        receiver
    }

    fn notified(&self, channel: &str, payload: &str) {
        match channel {
            "txgate_sagas" => {
                if let Some(waiter) = self.waiters.get(payload) {
                    waiter.notify_waiters();
                }
            }
            "txgate_admin" => {
                if let Some(sender) = &*self.admin.lock().expect("admin") {
                    let _ = sender.send(payload.into());
                }
            }
            _ => {}
        }
    }

    fn wake_all(&self) {
        for waiter in self.waiters.iter() {
            waiter.notify_waiters();
        }
    }

    /// Listens for as long as the process runs, reconnecting when the connection breaks.
    pub(super) async fn run(self: Arc<Self>, config: Config) {
        loop {
            if let Err(error) = self.listen(&config).await {
                tracing::debug!(%error, "the notification connection broke; opening it again");
            }
            self.wake_all();
            tokio::time::sleep(RECONNECT_WAIT).await;
        }
    }

    async fn listen(&self, config: &Config) -> Result<(), tokio_postgres::Error> {
        let (client, mut connection) = config.connect(tokio_postgres::NoTls).await?;
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        {
            let listening = client.batch_execute("LISTEN txgate_sagas; LISTEN txgate_admin");
            tokio::pin!(listening);
            // The connection must be driven while LISTEN runs.
            loop {
                tokio::select! {
                    done = &mut listening => { done?; break; }
                    message = messages.next() => match message {
                        Some(Ok(AsyncMessage::Notification(n))) => self.notified(n.channel(), n.payload()),
                        Some(Ok(_)) => {}
                        Some(Err(error)) => return Err(error),
                        None => return Ok(()),
                    }
                }
            }
        }
        // Missed while the connection was down: whoever waits reads afresh.
        self.wake_all();
        while let Some(message) = messages.next().await {
            if let AsyncMessage::Notification(n) = message? {
                self.notified(n.channel(), n.payload());
            }
        }
        drop(client);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_wait_leaves_nothing_behind_however_it_ends() {
        let listener = Listener::default();
        {
            let mut notified = listener.wait("a");
            let _both = listener.wait("a");
            listener.notified("txgate_sagas", "a");
            notified.notified().await;
        }
        {
            let mut abandoned = listener.wait("b");
            let _ = tokio::time::timeout(Duration::from_millis(5), abandoned.notified()).await;
        }
        drop(listener.wait("c"));
        assert_eq!(listener.waited_on(), 0);
    }
}
