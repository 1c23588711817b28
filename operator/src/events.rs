//! Kubernetes Events about leases (`events.k8s.io/v1`), with repeats folded into a series as
//! Kubernetes recommends: the same reason and note about the same lease within [`SERIES_WINDOW`]
//! patches the first Event's count instead of creating another. What is remembered per recent
//! Event is small (its key and name), so ten thousand leases each reporting cost a few MiB.
//!
//! A visit never waits for an Event: [`Events::send`] stamps it with the time it happened and
//! queues it, and a task of its own writes the queue. Clearing a run-out claim is on the failover
//! path; an Event about it is not. When more than [`QUEUE`] Events wait, new ones are dropped and
//! counted.

use std::{
    collections::HashMap,
    sync::{Mutex, MutexGuard},
    time::Duration,
};

use futures::StreamExt;
use k8s_openapi::{
    api::{
        core::v1::ObjectReference,
        events::v1::{Event, EventSeries},
    },
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
    jiff::Timestamp,
};
use kube::{
    Api, Client, Resource,
    api::{Patch, PatchParams, PostParams},
    runtime::events::EventType,
};
use leadership_kube::crd::LeadershipLease;
use prometheus_client::metrics::counter::Counter;
use tokio::{sync::mpsc, time::Instant};
use tracing::warn;

/// How long a repeat of an Event is folded into its series.
pub const SERIES_WINDOW: Duration = Duration::from_secs(360);

/// How many Events may wait to be written; more are dropped (and counted).
pub const QUEUE: usize = 4096;

/// How many Events are written at once.
const WRITERS: usize = 8;

/// What makes two Events repeats of each other: the lease (namespace, name, uid), the type, the
/// reason and the note.
type Key = (String, String, String, &'static str, String, String);

/// An Event published lately: its name, how many times it happened, when last.
#[derive(Debug)]
struct Recent {
    name: String,
    count: i32,
    last: Instant,
}

/// One Event as a visit saw it happen, waiting to be written.
struct Pending {
    regarding: ObjectReference,
    type_: &'static str,
    reason: String,
    note: String,
    stamp: MicroTime,
    at: Instant,
}

/// Queues Events about leases for the writer task (see the module's comment).
pub struct Events {
    queue: mpsc::Sender<Pending>,
    dropped: Counter,
}

impl Events {
    /// Starts the writer task, publishing as `controller` (the reporting controller) run by
    /// `instance`; Events that find the queue full are counted in `dropped`. The task ends when
    /// the returned handle is dropped and the queue is written.
    pub fn start(client: Client, controller: &str, instance: &str, dropped: Counter) -> Events {
        let (queue, mut waiting) = mpsc::channel(QUEUE);
        let writer = Writer::new(client, controller, instance);
        tokio::spawn(async move {
            futures::stream::poll_fn(|cx| waiting.poll_recv(cx))
                .for_each_concurrent(WRITERS, |pending: Pending| async {
                    let reason = pending.reason.clone();
                    if let Err(err) = writer.publish(pending).await {
                        warn!(error = %err, reason, "could not record an Event");
                    }
                })
                .await;
        });
        Events { queue, dropped }
    }

    /// Queues an Event about `lease`, stamped now.
    pub fn send(&self, lease: &LeadershipLease, type_: EventType, reason: &str, note: String) {
        let pending = Pending {
            regarding: lease.object_ref(&()),
            type_: match type_ {
                EventType::Normal => "Normal",
                EventType::Warning => "Warning",
            },
            reason: reason.to_owned(),
            note,
            stamp: MicroTime(Timestamp::now()),
            at: Instant::now(),
        };
        if self.queue.try_send(pending).is_err() {
            self.dropped.inc();
            warn!(reason, "too many Events waiting to be written; dropped one");
        }
    }
}

/// Writes Events, folding repeats into series.
struct Writer {
    client: Client,
    controller: String,
    instance: String,
    recent: Mutex<HashMap<Key, Recent>>,
    pruned: Mutex<Instant>,
}

/// What to do with one Event: create it, or count it as the `count`th of the series named `name`.
#[derive(Debug, PartialEq, Eq)]
enum Publication {
    Create,
    Repeat { name: String, count: i32 },
}

impl Writer {
    fn new(client: Client, controller: &str, instance: &str) -> Self {
        Writer {
            client,
            controller: controller.to_owned(),
            instance: instance.to_owned(),
            recent: Mutex::default(),
            pruned: Mutex::new(Instant::now()),
        }
    }

    fn recent(&self) -> MutexGuard<'_, HashMap<Key, Recent>> {
        self.recent.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the Event under `key` at `now` repeats one published lately; forgets Events whose
    /// window passed (at most once per tenth of the window, so a burst costs no quadratic work).
    fn classify(&self, key: &Key, now: Instant) -> Publication {
        {
            let mut pruned = self.pruned.lock().unwrap_or_else(|p| p.into_inner());
            if now.duration_since(*pruned) > SERIES_WINDOW / 10 {
                *pruned = now;
                self.recent()
                    .retain(|_, r| now.duration_since(r.last) < SERIES_WINDOW);
            }
        }
        match self.recent().get(key) {
            Some(r) if now.duration_since(r.last) < SERIES_WINDOW => Publication::Repeat {
                name: r.name.clone(),
                count: r.count + 1,
            },
            _ => Publication::Create,
        }
    }

    /// Writes one Event: created, or counted in the series of the same one seen within
    /// [`SERIES_WINDOW`].
    async fn publish(&self, pending: Pending) -> Result<(), kube::Error> {
        let Pending {
            regarding,
            type_,
            reason,
            note,
            stamp,
            at,
        } = pending;
        let namespace = regarding.namespace.clone().unwrap_or_else(|| "default".into());
        let key: Key = (
            namespace.clone(),
            regarding.name.clone().unwrap_or_default(),
            regarding.uid.clone().unwrap_or_default(),
            type_,
            reason.clone(),
            note.clone(),
        );
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        let (name, count) = match self.classify(&key, at) {
            Publication::Repeat { name, count } => {
                let series = EventSeries {
                    count,
                    last_observed_time: stamp,
                };
                let patch = serde_json::json!({ "series": series });
                api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
                (name, count)
            }
            Publication::Create => {
                let name = format!("{}.{:x}", key.1, stamp.0.as_nanosecond());
                let event = Event {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        namespace: Some(namespace),
                        ..ObjectMeta::default()
                    },
                    action: Some(reason.clone()),
                    reason: Some(reason),
                    note: Some(note),
                    event_time: Some(stamp),
                    regarding: Some(regarding),
                    reporting_controller: Some(self.controller.clone()),
                    reporting_instance: Some(self.instance.clone()),
                    type_: Some(type_.to_owned()),
                    ..Event::default()
                };
                api.create(&PostParams::default(), &event).await?;
                (name, 1)
            }
        };
        self.recent().insert(
            key,
            Recent {
                name,
                count,
                last: at,
            },
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(reason: &str) -> Key {
        (
            "shop".into(),
            "web".into(),
            "uid".into(),
            "Normal",
            reason.into(),
            "note".into(),
        )
    }

    #[tokio::test]
    async fn a_repeat_within_the_window_joins_the_series_and_one_after_it_starts_anew() {
        let client = Client::try_from(kube::Config::new("http://127.0.0.1:1".parse().unwrap())).unwrap();
        let events = Writer::new(client, "leadership-operator", "op-0");
        let t0 = Instant::now();
        assert_eq!(events.classify(&key("Expired"), t0), Publication::Create);
        events.recent().insert(
            key("Expired"),
            Recent {
                name: "web.1".into(),
                count: 1,
                last: t0,
            },
        );
        assert_eq!(
            events.classify(&key("Expired"), t0 + Duration::from_secs(10)),
            Publication::Repeat {
                name: "web.1".into(),
                count: 2
            }
        );
        assert_eq!(
            events.classify(&key("Claimed"), t0 + Duration::from_secs(10)),
            Publication::Create,
            "another reason is another Event"
        );
        assert_eq!(
            events.classify(&key("Expired"), t0 + SERIES_WINDOW),
            Publication::Create
        );
        assert!(events.recent().is_empty(), "a passed window is forgotten");
    }
}
