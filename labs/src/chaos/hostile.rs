//! The hostile unit: a member of the application with no sidecar behind it, whose credentials are
//! used against the leases throughout the fault run. Every 100 to 300 ms (a seeded pause) it reads
//! the application's lease, or one time in five the operators' own, makes a random write of it
//! ([`mutations`]) and sends it with one of its credentials as a compare-and-swap on the
//! resourceVersion it read, so the old state the API server judges is the one it read: the token
//! of its own member pod (four times in six), a token of the sidecar's account bound to no pod, or
//! the admin impersonating that account. Every write the API server admits is judged by
//! [`legality`]; an admitted write the judge calls illegal is a violation, kept with the old and
//! new object in `hostile.json`. Refusals are counted by HTTP code and rule, conflicts as lost
//! races.
//!
//! A legal write may be admitted: the hostile unit may take the lease when it is free. It keeps no
//! record and renews only by chance, so its claim runs out and the operator clears it; until then
//! no sidecar leads, which the report gives as the time the application had a hostile leader.

use std::{collections::BTreeMap, time::Duration};

use k8s_openapi::jiff::Timestamp;
use kube::{Api, Client, api::PostParams};
use leadership::wire::monotonic_ns;
use leadership_kube::crd::LeadershipLease;
use serde::{Deserialize, Serialize};
use tokio::{
    sync::watch,
    time::{sleep, timeout},
};

use super::{
    APPLICATION, OPERATOR_LEASE, Run,
    credentials::SIDECAR_ACCOUNT,
    faults::Rng,
    legality,
    mutations::{self, Mutation, Part, Scene},
};
use leadership_e2e::{controlplane::admin_client, testenv};

/// The hostile unit's pod.
pub(super) const HOSTILE: &str = "chaos-hostile";
/// Mixed into the run's seed for the hostile unit's own generator (the fault plan keeps its own).
const SEED: u64 = 0x4057_11E5;
/// How long a request may take before it counts as unanswered.
const PATIENCE: Duration = Duration::from_secs(10);
/// The most refused-though-legal writes kept for study.
const KEPT: usize = 100;

/// A credential the hostile unit writes with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Credential {
    /// The token of its own member pod (the sidecar's account, bound to the pod).
    PodToken,
    /// A token of the sidecar's account bound to no pod.
    UnboundToken,
    /// The admin impersonating the sidecar's account.
    Impersonation,
}

impl Credential {
    /// The credential's name, as in the report.
    pub fn name(self) -> &'static str {
        match self {
            Credential::PodToken => "pod-token",
            Credential::UnboundToken => "unbound-token",
            Credential::Impersonation => "impersonation",
        }
    }
}

/// What the hostile unit did in a run, in figures.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// Its pod's name.
    pub unit: String,
    /// Writes sent, by credential.
    pub sent: BTreeMap<String, u64>,
    /// Reads that failed (the API server away): no write followed them.
    pub reads_failed: u64,
    /// Writes refused, by HTTP code and the first words of the rule's message.
    pub refused: BTreeMap<String, u64>,
    /// Writes that lost a race: the lease had changed since it was read (409).
    pub lost_races: u64,
    /// Writes without an answer (the API server away or too slow): not judged.
    pub unanswered: u64,
    /// Writes admitted and legal, by what they were.
    pub admitted_legal: BTreeMap<String, u64>,
    /// Writes admitted though illegal: must be 0 (each is in `hostile.json`).
    pub admitted_illegal: u64,
    /// Writes refused though the judge found them legal (the first ones are in `hostile.json`):
    /// not a violation, but a disagreement between the judge and the API server to look at.
    pub refused_though_legal: u64,
    /// How many times the application had the hostile unit as its leader.
    pub held: u64,
    /// For how long in all, in seconds (as its own reads and writes saw it).
    pub held_s: f64,
}

impl Summary {
    /// Writes sent with every credential.
    pub fn sent_total(&self) -> u64 {
        self.sent.values().sum()
    }

    /// Writes refused for every reason.
    pub fn refused_total(&self) -> u64 {
        self.refused.values().sum()
    }
}

/// One write kept for study.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Kept {
    /// The credential it was sent with.
    pub credential: Credential,
    /// The part it replaced.
    pub part: Part,
    /// What the hostile unit changed.
    pub moves: Vec<String>,
    /// The object read, whose resourceVersion the write named.
    pub old: LeadershipLease,
    /// The object stored (when admitted) or sent (when refused).
    pub new: LeadershipLease,
    /// The judge's reason (when admitted though illegal) or the API server's message (when
    /// refused though legal).
    pub why: String,
}

/// Everything the hostile unit found, as written to `hostile.json`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Findings {
    /// The figures.
    pub summary: Summary,
    /// Every write admitted though illegal.
    pub illegal: Vec<Kept>,
    /// The first writes refused though the judge found them legal.
    pub refused_though_legal: Vec<Kept>,
    /// When the application had the hostile unit as its leader, as its own reads and writes saw
    /// it: (from, to) on CLOCK_MONOTONIC in nanoseconds, the clock of the sidecars' records.
    pub held: Vec<(u64, u64)>,
}

/// One write sent: to which lease, with which credential, on which object read.
struct Write {
    name: &'static str,
    credential: Credential,
    read: LeadershipLease,
    mutation: Mutation,
}

impl Write {
    /// The pod the credential is bound to, if any (the judge's writer).
    fn writer(&self) -> Option<&'static str> {
        (self.credential == Credential::PodToken).then_some(HOSTILE)
    }

    fn own_lease(&self) -> bool {
        self.name == OPERATOR_LEASE
    }

    /// The write kept for study, with `new` (stored or sent) and `why`.
    fn kept(self, new: LeadershipLease, why: String) -> Kept {
        Kept {
            credential: self.credential,
            part: self.mutation.part,
            moves: self.mutation.moves,
            old: self.read,
            new,
            why,
        }
    }
}

/// The hostile unit's clients, one per credential.
struct Clients {
    pod: Client,
    unbound: Client,
    impersonation: Client,
}

/// The hostile unit, ready to run.
pub(super) struct HostileUnit {
    clients: Clients,
    units: Vec<String>,
    lease_ms: i64,
    rng: Rng,
    findings: Findings,
    held_since: Option<u64>,
}

impl HostileUnit {
    /// Creates the hostile unit's member Pod object and its credentials (kubeconfigs in the
    /// run's log folder), after the run's units are known.
    pub(super) async fn prepare(run: &Run) -> anyhow::Result<HostileUnit> {
        let pod_config = run.logs.join(format!("{HOSTILE}.kubeconfig"));
        run.pod_kubeconfig(HOSTILE, SIDECAR_ACCOUNT, true, None, &pod_config)
            .await?;
        let unbound = run.logs.join(format!("{HOSTILE}-unbound.kubeconfig"));
        let user = format!("system:serviceaccount:{APPLICATION}:{SIDECAR_ACCOUNT}");
        let clients = Clients {
            pod: admin_client(&pod_config).await?,
            unbound: run.unbound_client(SIDECAR_ACCOUNT, &unbound).await?,
            impersonation: testenv::impersonating_client(run.plane.kubeconfig(), &user, &[], &[]).await?,
        };
        Ok(HostileUnit {
            clients,
            units: run.units.iter().map(|u| u.name.clone()).collect(),
            lease_ms: i64::try_from(run.lease().as_millis()).unwrap_or(i64::MAX),
            rng: Rng::new(run.settings.seed ^ SEED),
            findings: Findings {
                summary: Summary {
                    unit: HOSTILE.into(),
                    ..Summary::default()
                },
                ..Findings::default()
            },
            held_since: None,
        })
    }

    /// Writes until `stop` turns true (or its sender is gone); what it found.
    pub(super) async fn run(mut self, mut stop: watch::Receiver<bool>) -> Findings {
        while !*stop.borrow() {
            let pause = Duration::from_millis(self.rng.between(100.0, 300.0) as u64);
            tokio::select! {
                changed = stop.changed() => if changed.is_err() { break },
                () = sleep(pause) => self.attempt().await,
            }
        }
        self.note_holder(false);
        self.findings
    }

    fn api(&self, credential: Credential) -> Api<LeadershipLease> {
        let client = match credential {
            Credential::PodToken => &self.clients.pod,
            Credential::UnboundToken => &self.clients.unbound,
            Credential::Impersonation => &self.clients.impersonation,
        };
        Api::namespaced(client.clone(), APPLICATION)
    }

    /// One read, one random write, and its judgement.
    async fn attempt(&mut self) {
        let name = if self.rng.below(5) == 0 {
            OPERATOR_LEASE
        } else {
            APPLICATION
        };
        let read = match timeout(PATIENCE, self.api(Credential::PodToken).get(name)).await {
            Ok(Ok(lease)) => lease,
            _ => {
                self.findings.summary.reads_failed += 1;
                return;
            }
        };
        self.observe(&read);
        let scene = Scene {
            me: HOSTILE,
            units: &self.units,
            lease_ms: self.lease_ms,
            now: Timestamp::now(),
        };
        let mutation = mutations::write(&mut self.rng, &read, &scene);
        let credential = match self.rng.below(6) {
            4 => Credential::UnboundToken,
            5 => Credential::Impersonation,
            _ => Credential::PodToken,
        };
        let api = self.api(credential);
        let params = PostParams::default();
        let answer = match mutation.part {
            Part::Status => timeout(PATIENCE, api.replace_status(name, &params, &mutation.object)).await,
            Part::Object => timeout(PATIENCE, api.replace(name, &params, &mutation.object)).await,
        };
        *self
            .findings
            .summary
            .sent
            .entry(credential.name().into())
            .or_default() += 1;
        let write = Write {
            name,
            credential,
            read,
            mutation,
        };
        match answer {
            Ok(Ok(stored)) => self.admitted(write, stored),
            Ok(Err(kube::Error::Api(status))) if status.code == 409 => self.findings.summary.lost_races += 1,
            Ok(Err(kube::Error::Api(status))) => self.refused(write, status.code, &status.message),
            Ok(Err(_)) | Err(_) => self.findings.summary.unanswered += 1,
        }
    }

    /// Judges a write the API server admitted, `stored` the object it stored.
    fn admitted(&mut self, write: Write, stored: LeadershipLease) {
        match legality::judge(&write.read, &stored, write.writer(), write.own_lease()) {
            Ok(legal) => {
                let summary = &mut self.findings.summary;
                *summary.admitted_legal.entry(legal.name().into()).or_default() += 1;
                self.observe(&stored);
            }
            Err(why) => {
                self.findings.summary.admitted_illegal += 1;
                self.findings.illegal.push(write.kept(stored, why));
            }
        }
    }

    /// Counts a refusal by its rule, and keeps it if the judge found the write legal.
    fn refused(&mut self, write: Write, code: u16, message: &str) {
        let summary = &mut self.findings.summary;
        *summary
            .refused
            .entry(format!("{code} {}", rule_words(message)))
            .or_default() += 1;
        if legality::judge(
            &write.read,
            &write.mutation.object,
            write.writer(),
            write.own_lease(),
        )
        .is_ok()
        {
            summary.refused_though_legal += 1;
            if self.findings.refused_though_legal.len() < KEPT {
                let sent = write.mutation.object.clone();
                self.findings
                    .refused_though_legal
                    .push(write.kept(sent, message.to_owned()));
            }
        }
    }

    /// Notes whether an object of the application's lease names the hostile unit as holder.
    fn observe(&mut self, lease: &LeadershipLease) {
        if lease.metadata.name.as_deref() == Some(APPLICATION) {
            let holds = lease.status.as_ref().and_then(|s| s.holder.as_deref()) == Some(HOSTILE);
            self.note_holder(holds);
        }
    }

    fn note_holder(&mut self, holds: bool) {
        let now = monotonic_ns();
        match (holds, self.held_since) {
            (true, None) => self.held_since = Some(now),
            (false, Some(since)) => {
                let summary = &mut self.findings.summary;
                summary.held += 1;
                summary.held_s += now.saturating_sub(since) as f64 / 1e9;
                self.findings.held.push((since, now));
                self.held_since = None;
            }
            _ => {}
        }
    }
}

/// The rule in a refusal's message, for counting refusals by rule: what follows the API server's
/// preamble (`... denied request:`, `... is forbidden:`, `... is invalid:`), up to six words and
/// before the first word with a digit (names and numbers vary from write to write); the bracket
/// of a list of schema errors left out.
pub fn rule_words(message: &str) -> String {
    let rule = ["denied request: ", "is forbidden: ", "is invalid: "]
        .iter()
        .find_map(|preamble| message.split_once(preamble).map(|(_, rule)| rule))
        .unwrap_or(message)
        .trim_start_matches('[');
    rule.split_whitespace()
        .take_while(|word| !word.chars().any(|c| c.is_ascii_digit()))
        .take(6)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_counted_by_their_rule() {
        assert_eq!(
            rule_words(
                "leadershipleases.leadership.dev \"chaos\" is forbidden: ValidatingAdmissionPolicy 'leadership-claims' with binding 'leadership-claims' denied request: the lease is held by chaos-1: only the operator clears a claim"
            ),
            "the lease is held by"
        );
        assert_eq!(
            rule_words(
                "LeadershipLease.leadership.dev \"chaos\" is invalid: status.term: Invalid value: \"integer\": the term must never decrease"
            ),
            "status.term: Invalid value: \"integer\": the term"
        );
        assert_eq!(
            rule_words("x is invalid: [status.term: Invalid value: 3, status.renewals: ...]"),
            "status.term: Invalid value:"
        );
        assert_eq!(rule_words("no preamble at all"), "no preamble at all");
    }
}
