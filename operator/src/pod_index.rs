//! What the operator knows of pods: for each pod in its scope, the facts the lease plans read (all
//! containers terminated, its app's health, the application it belongs to, the application it is
//! labelled leader of), and which leases care about which pods. Fed by the Pod watch: an event updates one pod's facts and names only the
//! leases of its namespace that read that pod, and only when a fact changed; a deleted pod is
//! forgotten, and a relist replaces everything. No I/O.

use std::collections::{BTreeSet, HashMap, HashSet};

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;

use crate::{
    health::{self, AppState, UnitHealth},
    inject::annotations::APPLICATION,
    plan::{LEADER_LABEL, LEADER_OF_LABEL},
};

/// A pod or an application, by (namespace, name).
pub type Key = (String, String);

/// What the plans read of one pod.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodFacts {
    /// Every container has terminated, as its kubelet reports: the unit can no longer act.
    pub terminated: bool,
    /// What the health rule reads: its app containers, Ready (and not being deleted), being
    /// deleted, revision, ordinal, age.
    pub health: UnitHealth,
    /// The application whose leader labels it carries, if any.
    pub leads: Option<String>,
    /// The application it belongs to (its `leadership.dev/application` annotation), unless it is
    /// being deleted.
    pub member_of: Option<String>,
}

impl PodFacts {
    /// The facts of `pod` as its object shows them.
    pub fn of(pod: &Pod) -> Self {
        let labels = pod.labels();
        let leads = (labels.get(LEADER_LABEL).map(String::as_str) == Some("true"))
            .then(|| labels.get(LEADER_OF_LABEL).cloned())
            .flatten();
        let ready = pod.metadata.deletion_timestamp.is_none()
            && pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        let member_of = pod
            .metadata
            .deletion_timestamp
            .is_none()
            .then(|| pod.annotations().get(APPLICATION).cloned())
            .flatten();
        PodFacts {
            terminated: all_containers_terminated(pod),
            health: UnitHealth {
                app: AppState::of(pod),
                ready,
                terminating: pod.metadata.deletion_timestamp.is_some(),
                revision: health::revision(pod),
                ordinal: health::statefulset_ordinal(pod),
                created: pod.metadata.creation_timestamp.as_ref().map(|t| t.0),
            },
            leads,
            member_of,
        }
    }
}

/// Whether every container of `pod` has terminated, as its kubelet reports: the only proof that
/// the unit can no longer act.
pub fn all_containers_terminated(pod: &Pod) -> bool {
    let Some(status) = pod.status.as_ref() else {
        return false;
    };
    let Some(containers) = status.container_statuses.as_ref() else {
        return false;
    };
    let declared = pod.spec.as_ref().map_or(0, |s| s.containers.len());
    let init = status.init_container_statuses.as_deref().unwrap_or_default();
    containers.len() >= declared.max(1)
        && containers
            .iter()
            .chain(init)
            .all(|c| c.state.as_ref().is_some_and(|s| s.terminated.is_some()))
}

/// The pods in scope and the leases that read them.
#[derive(Debug, Default)]
pub struct PodIndex {
    /// Every known pod's facts.
    pods: HashMap<Key, PodFacts>,
    /// Per application, the pods carrying its leader labels.
    labelled: HashMap<Key, BTreeSet<String>>,
    /// Per application, the pods that belong to it.
    members: HashMap<Key, BTreeSet<String>>,
    /// Per pod, the applications of its namespace whose holder or preferred unit it is.
    readers: HashMap<Key, BTreeSet<String>>,
    /// Per application, the pods its lease reads (to undo `readers` when they change).
    reads: HashMap<Key, Vec<String>>,
    /// Deleted pods kept because a lease still reads them and their containers had all
    /// terminated: the pod-loss rule must see that fact even when the Pod object is deleted right
    /// after. Each goes when no lease reads it any more.
    gone: HashSet<Key>,
    /// The pods of a relist in progress, replacing `pods` when it completes.
    relist: Option<HashMap<Key, PodFacts>>,
}

impl PodIndex {
    /// How many pods are known.
    pub fn len(&self) -> usize {
        self.pods.len()
    }

    /// Whether no pod is known.
    pub fn is_empty(&self) -> bool {
        self.pods.is_empty()
    }

    /// The facts of pod `name` in `namespace`, if it is known.
    pub fn facts(&self, namespace: &str, name: &str) -> Option<&PodFacts> {
        self.pods.get(&(namespace.to_owned(), name.to_owned()))
    }

    /// The pods carrying the leader labels of `application` in `namespace`.
    pub fn labelled(&self, namespace: &str, application: &str) -> Vec<String> {
        self.labelled
            .get(&(namespace.to_owned(), application.to_owned()))
            .map(|pods| pods.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The pods that belong to `application` in `namespace`, in name order.
    pub fn members(&self, namespace: &str, application: &str) -> Vec<String> {
        self.members
            .get(&(namespace.to_owned(), application.to_owned()))
            .map(|pods| pods.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// A pod was added or changed: the applications (namespace, name) to reconcile.
    pub fn apply(&mut self, pod: &Pod) -> Vec<Key> {
        let key = key_of(pod);
        self.gone.remove(&key);
        let facts = PodFacts::of(pod);
        self.set(key, Some(facts))
    }

    /// A pod was deleted: it is forgotten (unless a lease reads it and its last state shows every
    /// container terminated: then only that fact is kept, until no lease reads it); the
    /// applications to reconcile.
    pub fn delete(&mut self, pod: &Pod) -> Vec<Key> {
        let terminated =
            PodFacts::of(pod).terminated || self.pods.get(&key_of(pod)).is_some_and(|f| f.terminated);
        self.remove(key_of(pod), terminated)
    }

    /// Forgets pod `key`, or keeps it as gone with only `terminated` when a lease reads it.
    fn remove(&mut self, key: Key, terminated: bool) -> Vec<Key> {
        if terminated && self.readers.contains_key(&key) {
            self.gone.insert(key.clone());
            let kept = PodFacts {
                terminated: true,
                ..PodFacts::default()
            };
            return self.set(key, Some(kept));
        }
        self.gone.remove(&key);
        self.set(key, None)
    }

    /// A relist begins: the pods it lists replace every known one when it is done.
    pub fn relist_begin(&mut self) {
        self.relist = Some(HashMap::new());
    }

    /// A pod of the relist in progress.
    pub fn relist_apply(&mut self, pod: &Pod) {
        self.relist
            .get_or_insert_with(HashMap::new)
            .insert(key_of(pod), PodFacts::of(pod));
    }

    /// The relist is complete: pods it did not list are forgotten; the applications to reconcile
    /// (those reading a pod whose facts changed).
    pub fn relist_done(&mut self) -> Vec<Key> {
        let Some(listed) = self.relist.take() else {
            return Vec::new();
        };
        let gone: Vec<Key> = self
            .pods
            .keys()
            .filter(|key| !listed.contains_key(*key))
            .cloned()
            .collect();
        let mut woken: HashSet<Key> = HashSet::new();
        for key in gone {
            let terminated = self.pods.get(&key).is_some_and(|f| f.terminated);
            woken.extend(self.remove(key, terminated));
        }
        for (key, facts) in listed {
            woken.extend(self.set(key, Some(facts)));
        }
        let mut woken: Vec<Key> = woken.into_iter().collect();
        woken.sort();
        woken
    }

    /// The lease of `application` in `namespace` now reads these pods (its holder and its
    /// preferred unit): their changes wake it.
    pub fn reads(&mut self, namespace: &str, application: &str, pods: &[&str]) {
        let app = (namespace.to_owned(), application.to_owned());
        let new: Vec<String> = pods.iter().map(|p| (*p).to_owned()).collect();
        let old = self.reads.get(&app).cloned().unwrap_or_default();
        if old == new {
            return;
        }
        for pod in &new {
            self.readers
                .entry((namespace.to_owned(), pod.clone()))
                .or_default()
                .insert(application.to_owned());
        }
        if new.is_empty() {
            self.reads.remove(&app);
        } else {
            self.reads.insert(app, new.clone());
        }
        for pod in old.into_iter().filter(|p| !new.contains(p)) {
            self.unread(namespace, pod, application);
        }
    }

    /// The lease of `application` in `namespace` is gone: it reads no pod.
    pub fn forget_lease(&mut self, namespace: &str, application: &str) {
        let app = (namespace.to_owned(), application.to_owned());
        for pod in self.reads.remove(&app).unwrap_or_default() {
            self.unread(namespace, pod, application);
        }
    }

    /// The lease of `application` no longer reads `pod`; a gone pod nobody reads is forgotten.
    fn unread(&mut self, namespace: &str, pod: String, application: &str) {
        let key = (namespace.to_owned(), pod);
        if let Some(readers) = self.readers.get_mut(&key) {
            readers.remove(application);
            if readers.is_empty() {
                self.readers.remove(&key);
                if self.gone.contains(&key) {
                    self.set(key, None);
                }
            }
        }
    }

    /// The leases known to read pods, for tests and metrics.
    pub fn leases_reading(&self) -> usize {
        self.reads.len()
    }

    /// Sets (or with `None`, forgets) one pod's facts; the applications to wake if any changed.
    fn set(&mut self, key: Key, facts: Option<PodFacts>) -> Vec<Key> {
        if facts.is_none() {
            self.gone.remove(&key);
        }
        let old = match &facts {
            Some(facts) => self.pods.insert(key.clone(), facts.clone()),
            None => self.pods.remove(&key),
        };
        if old == facts {
            return Vec::new();
        }
        let (namespace, pod) = &key;
        let (old_leads, old_member) = old.map_or((None, None), |f| (f.leads, f.member_of));
        let (new_leads, new_member) = facts.map_or((None, None), |f| (f.leads, f.member_of));
        move_between(&mut self.labelled, namespace, pod, &old_leads, &new_leads);
        move_between(&mut self.members, namespace, pod, &old_member, &new_member);
        let mut woken: BTreeSet<String> = self.readers.get(&key).cloned().unwrap_or_default();
        woken.extend(
            [old_leads, new_leads, old_member, new_member]
                .into_iter()
                .flatten(),
        );
        woken.into_iter().map(|app| (namespace.clone(), app)).collect()
    }
}

/// Moves `pod` from the set of application `from` to that of `to` in `sets` (nothing when equal);
/// an emptied set is removed.
fn move_between(
    sets: &mut HashMap<Key, BTreeSet<String>>,
    namespace: &str,
    pod: &str,
    from: &Option<String>,
    to: &Option<String>,
) {
    if from == to {
        return;
    }
    if let Some(app) = from {
        let key = (namespace.to_owned(), app.clone());
        if let Some(pods) = sets.get_mut(&key) {
            pods.remove(pod);
            if pods.is_empty() {
                sets.remove(&key);
            }
        }
    }
    if let Some(app) = to {
        sets.entry((namespace.to_owned(), app.clone()))
            .or_default()
            .insert(pod.to_owned());
    }
}

fn key_of(pod: &Pod) -> Key {
    (pod.namespace().unwrap_or_default(), pod.name_any())
}

#[cfg(test)]
mod tests {
    use k8s_openapi::{
        api::core::v1::{PodCondition, PodStatus},
        apimachinery::pkg::apis::meta::v1::ObjectMeta,
    };

    use super::*;

    fn pod(namespace: &str, name: &str, ready: bool, leads: Option<&str>) -> Pod {
        let mut labels = std::collections::BTreeMap::new();
        if let Some(app) = leads {
            labels.insert(LEADER_LABEL.to_owned(), "true".to_owned());
            labels.insert(LEADER_OF_LABEL.to_owned(), app.to_owned());
        }
        Pod {
            metadata: ObjectMeta {
                namespace: Some(namespace.into()),
                name: Some(name.into()),
                labels: Some(labels),
                ..ObjectMeta::default()
            },
            status: Some(PodStatus {
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..PodCondition::default()
                }]),
                ..PodStatus::default()
            }),
            ..Pod::default()
        }
    }

    fn app(namespace: &str, name: &str) -> Key {
        (namespace.into(), name.into())
    }

    #[test]
    fn churned_pods_are_forgotten_and_the_index_returns_to_its_size() {
        let mut index = PodIndex::default();
        index.apply(&pod("shop", "web-0", true, Some("web")));
        index.reads("shop", "web", &["web-0"]);
        let before = (index.len(), index.leases_reading());
        for round in 0..100 {
            let name = format!("job-{round}");
            index.apply(&pod("batch", &name, false, None));
            index.apply(&pod("batch", &name, true, None));
            index.delete(&pod("batch", &name, true, None));
        }
        assert_eq!((index.len(), index.leases_reading()), before);
        index.delete(&pod("shop", "web-0", true, Some("web")));
        assert!(index.is_empty());
        assert!(index.labelled("shop", "web").is_empty());
    }

    #[test]
    fn a_pod_event_wakes_only_the_leases_that_read_it_and_only_when_a_fact_changed() {
        let mut index = PodIndex::default();
        index.reads("shop", "web", &["web-0", "web-1"]);
        index.reads("shop", "db", &["db-0"]);
        index.reads("other", "web", &["web-0"]);
        assert_eq!(
            index.apply(&pod("shop", "web-1", false, None)),
            vec![app("shop", "web")]
        );
        assert_eq!(
            index.apply(&pod("shop", "web-1", false, None)),
            Vec::<Key>::new(),
            "nothing the plans read changed"
        );
        assert_eq!(
            index.apply(&pod("shop", "web-1", true, None)),
            vec![app("shop", "web")]
        );
        assert_eq!(index.apply(&pod("shop", "web-9", true, None)), Vec::<Key>::new());
        // A leader label wakes the application it names, and its removal too.
        assert_eq!(
            index.apply(&pod("shop", "web-9", true, Some("db"))),
            vec![app("shop", "db")]
        );
        assert_eq!(index.labelled("shop", "db"), vec!["web-9".to_owned()]);
        assert_eq!(
            index.delete(&pod("shop", "web-9", true, Some("db"))),
            vec![app("shop", "db")]
        );
        assert!(index.labelled("shop", "db").is_empty());
        // A lease that no longer reads a pod is not woken by it.
        index.reads("shop", "web", &["web-0"]);
        assert_eq!(index.apply(&pod("shop", "web-1", false, None)), Vec::<Key>::new());
        index.forget_lease("shop", "web");
        assert_eq!(index.apply(&pod("shop", "web-0", true, None)), Vec::<Key>::new());
    }

    #[test]
    fn a_relist_replaces_every_pod_and_wakes_the_leases_whose_pods_changed() {
        let mut index = PodIndex::default();
        index.reads("shop", "web", &["web-0"]);
        index.reads("shop", "db", &["db-0"]);
        index.apply(&pod("shop", "web-0", true, Some("web")));
        index.apply(&pod("shop", "db-0", true, None));
        index.apply(&pod("shop", "gone", true, None));
        index.relist_begin();
        index.relist_apply(&pod("shop", "db-0", true, None));
        index.relist_apply(&pod("shop", "new", false, None));
        assert_eq!(
            index.relist_done(),
            vec![app("shop", "web")],
            "web-0 was deleted while away"
        );
        assert_eq!(index.len(), 2);
        assert!(index.facts("shop", "gone").is_none());
        assert!(index.labelled("shop", "web").is_empty());
    }

    #[test]
    fn members_are_the_annotated_pods_not_being_deleted() {
        let member = |name: &str, app: &str, deleting: bool| {
            let mut pod = pod("shop", name, true, None);
            pod.metadata.annotations = Some([(APPLICATION.to_owned(), app.to_owned())].into());
            if deleting {
                pod.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
                ));
            }
            pod
        };
        let mut index = PodIndex::default();
        assert_eq!(
            index.apply(&member("web-1", "web", false)),
            vec![app("shop", "web")]
        );
        index.apply(&member("web-0", "web", false));
        index.apply(&member("db-0", "db", false));
        index.apply(&pod("shop", "loner", true, None));
        assert_eq!(
            index.members("shop", "web"),
            vec!["web-0".to_owned(), "web-1".to_owned()]
        );
        assert_eq!(
            index.apply(&member("web-0", "web", true)),
            vec![app("shop", "web")],
            "a pod being deleted leaves its application"
        );
        assert_eq!(index.members("shop", "web"), vec!["web-1".to_owned()]);
        index.delete(&member("web-1", "web", false));
        assert!(index.members("shop", "web").is_empty());
        assert_eq!(index.members("shop", "db"), vec!["db-0".to_owned()]);
    }

    #[test]
    fn a_holder_deleted_after_its_containers_terminated_stays_terminated_while_its_lease_reads_it() {
        let mut terminated = pod("shop", "web-0", false, None);
        terminated.status = Some(PodStatus {
            container_statuses: Some(vec![k8s_openapi::api::core::v1::ContainerStatus {
                name: "app".into(),
                state: Some(k8s_openapi::api::core::v1::ContainerState {
                    terminated: Some(k8s_openapi::api::core::v1::ContainerStateTerminated {
                        exit_code: 137,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            ..PodStatus::default()
        });
        let mut index = PodIndex::default();
        index.reads("shop", "web", &["web-0"]);
        assert_eq!(index.apply(&terminated), vec![app("shop", "web")]);
        index.delete(&terminated);
        assert!(
            index.facts("shop", "web-0").is_some_and(|f| f.terminated),
            "kept while read"
        );
        index.reads("shop", "web", &["web-0", "web-1"]);
        assert!(index.facts("shop", "web-0").is_some(), "still read");
        index.reads("shop", "web", &[]);
        assert!(index.is_empty(), "forgotten once no lease reads it");
        // A pod nobody reads is forgotten at once, terminated or not.
        index.apply(&terminated);
        index.delete(&terminated);
        assert!(index.is_empty());
    }
}
