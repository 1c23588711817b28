//! The pod annotations that ask for the sidecar, and what each one sets. Pure: annotations in,
//! the sidecar's settings (environment variables) or a refusal naming the annotation out.

use std::{collections::BTreeMap, time::Duration};

use leadership::{
    tracker::timing::{Configured, check_configured},
    validate,
};

/// The annotation that asks for the sidecar: the application whose leadership the pod takes part in.
pub const APPLICATION: &str = "leadership.dev/application";
/// Set by the webhook on every pod it injected (the value names the sidecar image).
pub const INJECTED: &str = "leadership.dev/injected";
/// The prefix of every annotation of this project.
pub const PREFIX: &str = "leadership.dev/";

/// One optional annotation: its name, the sidecar environment variable it sets, what it means.
#[derive(Clone, Copy, Debug)]
pub struct Setting {
    /// The annotation.
    pub annotation: &'static str,
    /// The sidecar's environment variable it sets.
    pub env: &'static str,
    /// What it means, for the documentation and error messages.
    pub meaning: &'static str,
}

/// The optional annotations, in the order their variables appear in the sidecar's environment.
pub const SETTINGS: [Setting; 6] = [
    Setting {
        annotation: "leadership.dev/claim-duration",
        env: "LEADERSHIP_CLAIM_DURATION",
        meaning: "the guarantee d of every \"leader\" answer, 1s to 5m (default 5s)",
    },
    Setting {
        annotation: "leadership.dev/lease-length",
        env: "LEADERSHIP_LEASE_LENGTH",
        meaning: "the lease length L asked for at each claim, 2d to 10m (default 4d, at most 10m)",
    },
    Setting {
        annotation: "leadership.dev/on-elected",
        env: "LEADERSHIP_ON_ELECTED",
        meaning: "a command (sh -c) run when the pod becomes leader",
    },
    Setting {
        annotation: "leadership.dev/on-deposed",
        env: "LEADERSHIP_ON_DEPOSED",
        meaning: "a command (sh -c) run when the pod stops being leader",
    },
    Setting {
        annotation: "leadership.dev/hook-timeout",
        env: "LEADERSHIP_HOOK_TIMEOUT",
        meaning: "how long a hook may run before it is killed (default 30s)",
    },
    Setting {
        annotation: ADMIN_PORT_ANNOTATION,
        env: ADMIN_ADDRESS_ENV,
        meaning: "the sidecar's admin port (/healthz, /readyz, /metrics), 1024 to 65535 (default: the chart's sidecar.adminPort); pick one no container of the pod uses",
    },
];

const CLAIM_DURATION: usize = 0;
const LEASE_LENGTH: usize = 1;
const HOOK_TIMEOUT: usize = 4;
const ADMIN_PORT: usize = 5;

/// The annotation that moves the sidecar's admin port.
pub const ADMIN_PORT_ANNOTATION: &str = "leadership.dev/admin-port";
/// The sidecar's environment variable for its admin address (`--admin-address`).
pub const ADMIN_ADDRESS_ENV: &str = "LEADERSHIP_ADMIN_ADDRESS";
/// The lowest admin port an annotation may ask for: the sidecar runs as a user without the
/// capability to bind the ports below.
pub const MIN_ADMIN_PORT: u16 = 1024;

/// The admin address the sidecar listens on for `port`: every interface, for probes and
/// Prometheus.
pub fn admin_address(port: u16) -> String {
    format!("0.0.0.0:{port}")
}

/// The environment variable that names the application.
pub const APPLICATION_ENV: &str = "LEADERSHIP_APPLICATION";

/// A refusal: an annotation whose value cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("annotation {annotation}: {reason}")]
pub struct AnnotationError {
    /// The annotation.
    pub annotation: String,
    /// Why its value is refused.
    pub reason: String,
}

fn refuse(annotation: &str, reason: impl Into<String>) -> AnnotationError {
    AnnotationError {
        annotation: annotation.to_owned(),
        reason: reason.into(),
    }
}

/// What the annotations ask for: the application, and the sidecar's environment in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requested {
    /// The application.
    pub application: String,
    /// The sidecar's environment variables set by annotations (the application's first).
    pub env: Vec<(&'static str, String)>,
    /// The admin port the pod asked for, if it did (its container port moves with it).
    pub admin_port: Option<u16>,
}

fn duration(annotation: &str, text: &str) -> Result<Duration, AnnotationError> {
    validate::parse_duration(text).map_err(|_| {
        refuse(
            annotation,
            format!("{text:?} is not a duration like 10s, 500ms, 2m or 1m30s"),
        )
    })
}

/// Reads the annotations of a pod. `Ok(None)`: the pod does not ask for the sidecar. A value that
/// the sidecar would refuse, or an unknown `leadership.dev/` annotation (a typo would otherwise be
/// ignored), is an error naming the annotation. `default_claim` is the claim duration the sidecar
/// has without the annotation (the template's), against which a lease length is checked.
pub fn requested(
    annotations: &BTreeMap<String, String>,
    default_claim: Duration,
) -> Result<Option<Requested>, AnnotationError> {
    let Some(application) = annotations.get(APPLICATION) else {
        return Ok(None);
    };
    let application = application.trim();
    validate::application_name(application).map_err(|err| {
        refuse(
            APPLICATION,
            format!("{application:?} is not an application name: {err}"),
        )
    })?;
    for name in annotations.keys().filter(|k| k.starts_with(PREFIX)) {
        let known = name == APPLICATION || name == INJECTED || SETTINGS.iter().any(|s| s.annotation == name);
        if !known {
            let names: Vec<&str> = std::iter::once(APPLICATION)
                .chain(SETTINGS.iter().map(|s| s.annotation))
                .collect();
            return Err(refuse(
                name,
                format!("unknown annotation; the known ones are {}", names.join(", ")),
            ));
        }
    }
    let value = |i: usize| annotations.get(SETTINGS[i].annotation).map(|v| v.trim());

    let claim = match value(CLAIM_DURATION) {
        Some(text) => duration(SETTINGS[CLAIM_DURATION].annotation, text)?,
        None => default_claim,
    };
    let lease = match value(LEASE_LENGTH) {
        Some(text) => Some(duration(SETTINGS[LEASE_LENGTH].annotation, text)?),
        None => None,
    };
    if let Err(err) = check_configured(claim, lease) {
        let setting = match err.configured() {
            Configured::ClaimDuration => CLAIM_DURATION,
            Configured::LeaseLength => LEASE_LENGTH,
        };
        return Err(refuse(SETTINGS[setting].annotation, err.to_string()));
    }
    if let Some(text) = value(HOOK_TIMEOUT)
        && duration(SETTINGS[HOOK_TIMEOUT].annotation, text)?.is_zero()
    {
        return Err(refuse(
            SETTINGS[HOOK_TIMEOUT].annotation,
            "a hook timeout must be above zero",
        ));
    }
    let admin_port = match value(ADMIN_PORT) {
        Some(text) => Some(
            text.parse::<u16>()
                .ok()
                .filter(|port| *port >= MIN_ADMIN_PORT)
                .ok_or_else(|| {
                    refuse(
                        SETTINGS[ADMIN_PORT].annotation,
                        format!("{text:?} is not a port from {MIN_ADMIN_PORT} to 65535"),
                    )
                })?,
        ),
        None => None,
    };
    let mut env = vec![(APPLICATION_ENV, application.to_owned())];
    for setting in &SETTINGS {
        let Some(raw) = annotations.get(setting.annotation) else {
            continue;
        };
        if raw.trim().is_empty() {
            return Err(refuse(setting.annotation, "the value is empty"));
        }
        // Commands are passed as written; durations without surrounding blanks; the port as the
        // address the sidecar listens on.
        let value = match (setting.env, admin_port) {
            (ADMIN_ADDRESS_ENV, Some(port)) => admin_address(port),
            (name, _) if name.starts_with("LEADERSHIP_ON_") => raw.clone(),
            _ => raw.trim().to_owned(),
        };
        env.push((setting.env, value));
    }
    Ok(Some(Requested {
        application: application.to_owned(),
        env,
        admin_port,
    }))
}

#[cfg(test)]
mod tests {
    use leadership::tracker::timing::DEFAULT_CLAIM_DURATION;

    use super::*;

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn a_pod_without_the_application_annotation_asks_for_nothing() {
        let none = annotations(&[("leadership.dev/claim-duration", "soon"), ("other", "x")]);
        assert_eq!(requested(&none, DEFAULT_CLAIM_DURATION), Ok(None));
    }

    #[test]
    fn every_setting_becomes_the_sidecars_environment_in_order() {
        let all = annotations(&[
            ("leadership.dev/hook-timeout", "5s"),
            ("leadership.dev/on-deposed", "echo bye"),
            ("leadership.dev/on-elected", "echo hi"),
            ("leadership.dev/lease-length", " 30s "),
            ("leadership.dev/claim-duration", "4s"),
            ("leadership.dev/admin-port", " 9555 "),
            (APPLICATION, "web"),
            ("app.kubernetes.io/name", "web"),
        ]);
        let got = requested(&all, DEFAULT_CLAIM_DURATION).unwrap().unwrap();
        assert_eq!(got.application, "web");
        assert_eq!(
            got.env,
            vec![
                ("LEADERSHIP_APPLICATION", "web".to_owned()),
                ("LEADERSHIP_CLAIM_DURATION", "4s".to_owned()),
                ("LEADERSHIP_LEASE_LENGTH", "30s".to_owned()),
                ("LEADERSHIP_ON_ELECTED", "echo hi".to_owned()),
                ("LEADERSHIP_ON_DEPOSED", "echo bye".to_owned()),
                ("LEADERSHIP_HOOK_TIMEOUT", "5s".to_owned()),
                ("LEADERSHIP_ADMIN_ADDRESS", "0.0.0.0:9555".to_owned()),
            ]
        );
        assert_eq!(got.admin_port, Some(9555));
    }

    /// Annotations, the one refused, and words of the reason.
    type Case = (
        &'static [(&'static str, &'static str)],
        &'static str,
        &'static str,
    );

    #[test]
    fn bad_values_are_refused_naming_the_annotation() {
        let cases: &[Case] = &[
            (&[(APPLICATION, "Web_1")], APPLICATION, "not an application name"),
            (&[(APPLICATION, "")], APPLICATION, "not an application name"),
            (
                &[(APPLICATION, "web"), ("leadership.dev/claim-duration", "soon")],
                "leadership.dev/claim-duration",
                "not a duration",
            ),
            (
                &[(APPLICATION, "web"), ("leadership.dev/claim-duration", "10m")],
                "leadership.dev/claim-duration",
                "must be between 1s and 5m, not 10m",
            ),
            (
                &[(APPLICATION, "web"), ("leadership.dev/claim-duration", "500ms")],
                "leadership.dev/claim-duration",
                "must be between 1s and 5m, not 500ms",
            ),
            (
                &[(APPLICATION, "web"), ("leadership.dev/lease-length", "8s")],
                "leadership.dev/lease-length",
                "must be at least twice the claim duration (10s), not 8s",
            ),
            (
                &[
                    (APPLICATION, "web"),
                    ("leadership.dev/claim-duration", "4s"),
                    ("leadership.dev/lease-length", "7s"),
                ],
                "leadership.dev/lease-length",
                "at least twice the claim duration (8s), not 7s",
            ),
            (
                &[(APPLICATION, "web"), ("leadership.dev/lease-length", "11m")],
                "leadership.dev/lease-length",
                "must be at most 10m, not 11m",
            ),
            (
                &[(APPLICATION, "web"), ("leadership.dev/hook-timeout", "0s")],
                "leadership.dev/hook-timeout",
                "above zero",
            ),
            (
                &[(APPLICATION, "web"), ("leadership.dev/on-elected", "  ")],
                "leadership.dev/on-elected",
                "empty",
            ),
            (
                &[(APPLICATION, "web"), ("leadership.dev/admin-port", "80")],
                "leadership.dev/admin-port",
                "not a port from 1024 to 65535",
            ),
            (
                &[(APPLICATION, "web"), ("leadership.dev/admin-port", "70000")],
                "leadership.dev/admin-port",
                "not a port from 1024 to 65535",
            ),
            (
                &[(APPLICATION, "web"), ("leadership.dev/claim-durration", "4s")],
                "leadership.dev/claim-durration",
                "unknown annotation",
            ),
        ];
        for (pairs, annotation, reason) in cases {
            let err = requested(&annotations(pairs), DEFAULT_CLAIM_DURATION).unwrap_err();
            assert_eq!(err.annotation, *annotation, "{pairs:?}");
            assert!(err.to_string().contains(reason), "{pairs:?}: {err}");
            assert!(
                err.to_string().starts_with(&format!("annotation {annotation}: ")),
                "{err}"
            );
        }
    }

    #[test]
    fn a_lease_of_exactly_twice_the_claim_duration_is_accepted() {
        let ok = annotations(&[
            (APPLICATION, "web"),
            ("leadership.dev/claim-duration", "4s"),
            ("leadership.dev/lease-length", "8s"),
        ]);
        assert!(requested(&ok, DEFAULT_CLAIM_DURATION).unwrap().is_some());
    }
}
