//! Leadership that follows the app: whether a unit's app is healthy, from what its kubelet reports
//! of the app containers (every container of `spec.containers`; the injected sidecar is an init
//! container), and which standby should lead instead. Pure: the operator's plan reads it.
//!
//! A unit's app is unhealthy while an app container is not running (waiting, as in
//! `CrashLoopBackOff`, or terminated), or one restarted within the restart window; and, when the
//! application asks for it, while its Pod is not Ready (off by default: many apps report Ready
//! only as leader).

use std::time::Duration;

use k8s_openapi::{api::core::v1::Pod, jiff::Timestamp};
use leadership_kube::crd::HealthPolicy as PolicyFields;

/// How an application's leadership follows its app's health.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HealthPolicy {
    /// Whether an unhealthy leader hands over to a healthy standby.
    pub enabled: bool,
    /// How long the leader's app may be unhealthy before it hands over.
    pub grace: Duration,
    /// A restart of an app container this recent makes the app unhealthy.
    pub restart_window: Duration,
    /// Whether a Pod that is not Ready counts as unhealthy.
    pub require_ready: bool,
}

/// How long a leader's app may be unhealthy before it hands over, unless the application says.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(5);
/// How recent a restart makes an app unhealthy, unless the application says.
pub const DEFAULT_RESTART_WINDOW: Duration = Duration::from_secs(30);

impl Default for HealthPolicy {
    fn default() -> Self {
        HealthPolicy {
            enabled: true,
            grace: DEFAULT_GRACE,
            restart_window: DEFAULT_RESTART_WINDOW,
            require_ready: false,
        }
    }
}

impl HealthPolicy {
    /// The policy `spec.policy.health` asks for, the defaults where it is silent.
    pub fn from_spec(fields: Option<&PolicyFields>) -> Self {
        let default = HealthPolicy::default();
        let Some(fields) = fields else {
            return default;
        };
        let ms = |v: Option<i64>, or: Duration| {
            v.and_then(|v| u64::try_from(v).ok())
                .map_or(or, Duration::from_millis)
        };
        HealthPolicy {
            enabled: fields.enabled.unwrap_or(default.enabled),
            grace: ms(fields.grace_ms, default.grace),
            restart_window: ms(fields.restart_window_ms, default.restart_window),
            require_ready: fields.require_ready.unwrap_or(default.require_ready),
        }
    }
}

/// What the kubelet reports of a Pod's app containers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AppState {
    /// The first app container that is not running, and why (`app: waiting (CrashLoopBackOff)`).
    pub down: Option<String>,
    /// The latest time an app container's previous run ended (it restarted then).
    pub last_restart: Option<Timestamp>,
}

impl AppState {
    /// The app containers of `pod`, as its status shows them. A container the status does not
    /// list yet is down ("not started").
    pub fn of(pod: &Pod) -> Self {
        let declared: Vec<&str> = pod
            .spec
            .as_ref()
            .map(|s| s.containers.iter().map(|c| c.name.as_str()).collect())
            .unwrap_or_default();
        let statuses = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_deref())
            .unwrap_or_default();
        let mut state = AppState::default();
        for name in declared {
            let status = statuses.iter().find(|s| s.name == name);
            let running = status
                .and_then(|s| s.state.as_ref())
                .is_some_and(|s| s.running.is_some());
            if !running && state.down.is_none() {
                let why = status.and_then(|s| s.state.as_ref()).map_or_else(
                    || "not started".to_owned(),
                    |s| match (&s.waiting, &s.terminated) {
                        (Some(w), _) => format!("waiting ({})", w.reason.as_deref().unwrap_or("no reason")),
                        (_, Some(t)) => {
                            format!("terminated ({})", t.reason.as_deref().unwrap_or("no reason"))
                        }
                        _ => "not running".to_owned(),
                    },
                );
                state.down = Some(format!("{name}: {why}"));
            }
            let ended = status
                .and_then(|s| s.last_state.as_ref())
                .and_then(|s| s.terminated.as_ref())
                .and_then(|t| t.finished_at.as_ref())
                .map(|t| t.0);
            state.last_restart = state.last_restart.max(ended);
        }
        state
    }
}

/// What the health rule reads of one unit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UnitHealth {
    /// Its app containers.
    pub app: AppState,
    /// Its Pod is Ready.
    pub ready: bool,
    /// Its Pod is being deleted.
    pub terminating: bool,
    /// Its workload revision (`controller-revision-hash` or `pod-template-hash`).
    pub revision: Option<String>,
    /// Its ordinal, when a StatefulSet owns it.
    pub ordinal: Option<u32>,
    /// When its Pod was created.
    pub created: Option<Timestamp>,
}

impl UnitHealth {
    /// Why the unit's app is unhealthy at `now` under `policy`, or `None` when it is healthy.
    pub fn unhealthy(&self, policy: &HealthPolicy, now: Timestamp) -> Option<String> {
        if let Some(down) = &self.app.down {
            return Some(down.clone());
        }
        if let Some(at) = self.app.last_restart
            && now.duration_since(at).unsigned_abs() < policy.restart_window
        {
            return Some(format!("an app container restarted at {at}"));
        }
        (policy.require_ready && !self.ready).then(|| "not Ready".to_owned())
    }
}

/// The standby that should lead instead of `holder`, of `units` (name and health; the holder may
/// be among them): not being deleted, its app healthy; then Ready first, then at the workload's
/// current revision (that of the newest Pod: a rollout creates its Pods at the new one), then the
/// one a rollout reaches last (a StatefulSet's lowest ordinal; otherwise the oldest Pod, which a
/// ReplicaSet removes last), then by name.
pub fn best_standby<'a>(
    units: &'a [(String, UnitHealth)],
    holder: &str,
    policy: &HealthPolicy,
    now: Timestamp,
) -> Option<&'a str> {
    let current = units
        .iter()
        .filter(|(_, u)| u.created.is_some())
        .max_by_key(|(_, u)| u.created)
        .and_then(|(_, u)| u.revision.as_deref());
    units
        .iter()
        .filter(|(name, u)| name != holder && !u.terminating && u.unhealthy(policy, now).is_none())
        .min_by_key(|(name, u)| {
            (
                !u.ready,
                current.is_some() && u.revision.as_deref() != current,
                u.ordinal.unwrap_or(u32::MAX),
                u.created,
                name.as_str(),
            )
        })
        .map(|(name, _)| name.as_str())
}

/// The ordinal of a Pod a StatefulSet owns: the number after the last `-` of its name.
pub fn statefulset_ordinal(pod: &Pod) -> Option<u32> {
    let owned = pod
        .metadata
        .owner_references
        .as_deref()
        .unwrap_or_default()
        .iter()
        .any(|o| o.kind == "StatefulSet" && o.controller == Some(true));
    let name = pod.metadata.name.as_deref()?;
    owned.then(|| name.rsplit_once('-')?.1.parse().ok()).flatten()
}

/// The workload revision of a Pod: its `controller-revision-hash` (StatefulSet, DaemonSet) or
/// `pod-template-hash` (Deployment) label.
pub fn revision(pod: &Pod) -> Option<String> {
    let labels = pod.metadata.labels.as_ref()?;
    labels
        .get("controller-revision-hash")
        .or_else(|| labels.get("pod-template-hash"))
        .cloned()
}

#[cfg(test)]
mod tests {
    use k8s_openapi::{
        api::core::v1::{
            Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
            ContainerStateWaiting, ContainerStatus, PodSpec, PodStatus,
        },
        apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time},
    };

    use super::*;

    fn now() -> Timestamp {
        Timestamp::from_second(1_800_000_000).unwrap()
    }

    fn ago(seconds: i64) -> Timestamp {
        now().checked_sub(jiff_seconds(seconds)).unwrap()
    }

    fn jiff_seconds(seconds: i64) -> k8s_openapi::jiff::SignedDuration {
        k8s_openapi::jiff::SignedDuration::from_secs(seconds)
    }

    fn pod_with(states: &[(&str, ContainerState, Option<Timestamp>)]) -> Pod {
        Pod {
            spec: Some(PodSpec {
                containers: states
                    .iter()
                    .map(|(name, _, _)| Container {
                        name: (*name).into(),
                        ..Container::default()
                    })
                    .collect(),
                ..PodSpec::default()
            }),
            status: Some(PodStatus {
                container_statuses: Some(
                    states
                        .iter()
                        .map(|(name, state, ended)| ContainerStatus {
                            name: (*name).into(),
                            state: Some(state.clone()),
                            last_state: ended.map(|at| ContainerState {
                                terminated: Some(ContainerStateTerminated {
                                    finished_at: Some(Time(at)),
                                    ..ContainerStateTerminated::default()
                                }),
                                ..ContainerState::default()
                            }),
                            ..ContainerStatus::default()
                        })
                        .collect(),
                ),
                ..PodStatus::default()
            }),
            ..Pod::default()
        }
    }

    fn running() -> ContainerState {
        ContainerState {
            running: Some(ContainerStateRunning::default()),
            ..ContainerState::default()
        }
    }

    fn crash_looping() -> ContainerState {
        ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some("CrashLoopBackOff".into()),
                ..ContainerStateWaiting::default()
            }),
            ..ContainerState::default()
        }
    }

    fn healthy(name: &str) -> (String, UnitHealth) {
        (
            name.into(),
            UnitHealth {
                ready: true,
                ..UnitHealth::default()
            },
        )
    }

    #[test]
    fn a_crash_looping_or_recently_restarted_app_is_unhealthy_and_a_running_one_is_not() {
        let policy = HealthPolicy::default();
        let unit = |pod: &Pod| UnitHealth {
            app: AppState::of(pod),
            ..UnitHealth::default()
        };
        let looping = pod_with(&[("app", crash_looping(), Some(ago(5))), ("log", running(), None)]);
        assert_eq!(
            unit(&looping).unhealthy(&policy, now()).as_deref(),
            Some("app: waiting (CrashLoopBackOff)")
        );
        let restarted = pod_with(&[("app", running(), Some(ago(10)))]);
        assert!(unit(&restarted).unhealthy(&policy, now()).is_some());
        let long_ago = pod_with(&[("app", running(), Some(ago(3600)))]);
        assert_eq!(unit(&long_ago).unhealthy(&policy, now()), None);
        let unlisted = Pod {
            status: None,
            ..pod_with(&[("app", running(), None)])
        };
        assert_eq!(
            unit(&unlisted).unhealthy(&policy, now()).as_deref(),
            Some("app: not started")
        );
    }

    #[test]
    fn readiness_counts_only_when_the_application_asks() {
        let not_ready = UnitHealth::default();
        assert_eq!(not_ready.unhealthy(&HealthPolicy::default(), now()), None);
        let strict = HealthPolicy {
            require_ready: true,
            ..HealthPolicy::default()
        };
        assert_eq!(not_ready.unhealthy(&strict, now()).as_deref(), Some("not Ready"));
    }

    #[test]
    fn the_best_standby_is_healthy_ready_current_and_reached_last() {
        let policy = HealthPolicy::default();
        let mut units = vec![healthy("web-0"), healthy("web-1"), healthy("web-2")];
        for (i, (_, unit)) in units.iter_mut().enumerate() {
            unit.ordinal = Some(u32::try_from(i).unwrap());
            unit.revision = Some("old".into());
            unit.created = Some(ago(100 - i64::try_from(i).unwrap()));
        }
        // A StatefulSet's rollout replaces the highest ordinal first: web-0 is reached last.
        assert_eq!(best_standby(&units, "web-2", &policy, now()), Some("web-0"));
        // web-2 was replaced (new revision, newest Pod): it is the one to lead now.
        units[2].1.revision = Some("new".into());
        units[2].1.created = Some(ago(1));
        assert_eq!(best_standby(&units, "web-1", &policy, now()), Some("web-2"));
        // Unless it is not Ready yet, or its app is down.
        units[2].1.ready = false;
        assert_eq!(best_standby(&units, "web-1", &policy, now()), Some("web-0"));
        units[2].1.ready = true;
        units[2].1.app.down = Some("app: waiting (CrashLoopBackOff)".into());
        assert_eq!(best_standby(&units, "web-1", &policy, now()), Some("web-0"));
        // A Pod being deleted is never chosen; nor the holder; nobody healthy: none.
        units[0].1.terminating = true;
        assert_eq!(best_standby(&units, "web-1", &policy, now()), None);
    }

    #[test]
    fn without_ordinals_the_oldest_pod_is_reached_last() {
        let policy = HealthPolicy::default();
        let mut units = vec![healthy("web-abc"), healthy("web-def"), healthy("web-ghi")];
        units[0].1.created = Some(ago(10));
        units[1].1.created = Some(ago(30));
        units[2].1.created = Some(ago(20));
        assert_eq!(best_standby(&units, "web-ghi", &policy, now()), Some("web-def"));
    }

    #[test]
    fn ordinals_are_read_only_from_pods_a_statefulset_owns() {
        let mut pod = Pod {
            metadata: ObjectMeta {
                name: Some("web-12".into()),
                ..ObjectMeta::default()
            },
            ..Pod::default()
        };
        assert_eq!(statefulset_ordinal(&pod), None);
        pod.metadata.owner_references = Some(vec![OwnerReference {
            kind: "StatefulSet".into(),
            controller: Some(true),
            ..OwnerReference::default()
        }]);
        assert_eq!(statefulset_ordinal(&pod), Some(12));
    }

    #[test]
    fn the_spec_overrides_only_what_it_names() {
        let fields = PolicyFields {
            grace_ms: Some(1500),
            ..PolicyFields::default()
        };
        let policy = HealthPolicy::from_spec(Some(&fields));
        assert_eq!(
            policy,
            HealthPolicy {
                grace: Duration::from_millis(1500),
                ..HealthPolicy::default()
            }
        );
    }
}
