//! The one ticket type: an answer resolved once and read any number of times.

use std::future::Future;

use tokio::sync::watch;

use crate::api::Ticket;

/// A ticket resolved by a background task; cloning shares the answer.
#[derive(Clone, Debug)]
pub struct SharedTicket {
    rx: watch::Receiver<Option<bool>>,
}

impl SharedTicket {
    /// A ticket resolved by `resolve`, which runs on the current tokio runtime. If `resolve` is
    /// dropped unfinished (its runtime shut down), the ticket reads `false`.
    pub fn spawn(resolve: impl Future<Output = bool> + Send + 'static) -> Self {
        let (tx, rx) = watch::channel(None);
        tokio::spawn(async move {
            tokio::select! {
                value = resolve => { let _ = tx.send(Some(value)); }
                () = tx.closed() => {}
            }
        });
        SharedTicket { rx }
    }

    /// A ticket whose answer is already known.
    pub fn resolved(value: bool) -> Self {
        let (_tx, rx) = watch::channel(Some(value));
        SharedTicket { rx }
    }

    /// The answer if it is known now, without waiting.
    pub fn try_value(&self) -> Option<bool> {
        *self.rx.borrow()
    }
}

impl Ticket for SharedTicket {
    async fn wait(&self) -> bool {
        let mut rx = self.rx.clone();
        match rx.wait_for(Option::is_some).await {
            Ok(value) => value.unwrap_or(false),
            // The resolver ended without an answer: never report leadership on doubt.
            Err(_) => self.rx.borrow().unwrap_or(false),
        }
    }

    async fn ready(&self) {
        self.wait().await;
    }
}
