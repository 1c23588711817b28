//! The sidecar the webhook injects, as the chart renders it: one container spec (the same helper
//! renders the chart's example StatefulSet's sidecar), read from a file the chart mounts from a
//! ConfigMap, and checked once at start-up.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use k8s_openapi::api::core::v1::{Container, LocalObjectReference};
use leadership::{tracker::timing::DEFAULT_CLAIM_DURATION, validate};
use serde::Deserialize;

use super::annotations::ADMIN_ADDRESS_ENV;

/// The file the chart renders (`--sidecar-template`).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TemplateFile {
    /// The sidecar container: image, ports, probes, resources, securityContext, the socket's
    /// volume mount and the environment shared by every pod (`LEADERSHIP_SOCKET`, the downward API).
    pub container: Container,
    /// The ServiceAccount given to a pod that runs as its namespace's `default` one (or names
    /// none); absent: the pod's ServiceAccount is never changed.
    #[serde(default)]
    pub service_account_name: Option<String>,
    /// Secrets to pull the sidecar's image with (the chart's `imagePullSecrets`), added to every
    /// injected pod that does not list them yet.
    #[serde(default)]
    pub image_pull_secrets: Vec<LocalObjectReference>,
}

/// A template that is fit to inject.
#[derive(Clone, Debug, PartialEq)]
pub struct SidecarTemplate {
    /// The sidecar container, without the per-pod environment.
    pub container: Container,
    /// The socket's path, announced to every container as `LEADERSHIP_SOCKET`.
    pub socket: String,
    /// The emptyDir volume that holds the socket.
    pub volume: String,
    /// Where the volume is mounted (the socket's folder).
    pub mount_path: String,
    /// The sidecar's group, which owns the socket (mode 0660): every container of the pod gets it
    /// as a supplemental group.
    pub group: i64,
    /// See [`TemplateFile::service_account_name`].
    pub service_account_name: Option<String>,
    /// The names of the Secrets to pull the sidecar's image with.
    pub image_pull_secrets: Vec<String>,
    /// The admin port: the container's first port, on which its `LEADERSHIP_ADMIN_ADDRESS`
    /// listens and its probes ask. A pod's `leadership.dev/admin-port` moves both.
    pub admin_port: u16,
}

/// Why a template cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The file cannot be read or parsed.
    #[error("cannot read the sidecar template {path}: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A field is missing or wrong.
    #[error("sidecar template: {field}: {reason}")]
    Invalid {
        /// The field, as a path in the file.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// The environment variable that announces the socket.
pub const SOCKET_ENV: &str = "LEADERSHIP_SOCKET";

/// The container's admin port: its first port, which its literal `LEADERSHIP_ADMIN_ADDRESS`
/// must listen on (so that the probes reach the sidecar and a pod's annotation can move both).
fn admin_port(container: &Container) -> Result<u16, TemplateError> {
    let declared = container
        .ports
        .iter()
        .flatten()
        .next()
        .and_then(|p| u16::try_from(p.container_port).ok())
        .ok_or_else(|| invalid("container.ports", "needs the admin port as its first port"))?;
    let listens = container
        .env
        .iter()
        .flatten()
        .find(|e| e.name == ADMIN_ADDRESS_ENV)
        .and_then(|e| e.value.as_deref())
        .and_then(|address| address.parse::<std::net::SocketAddr>().ok())
        .map(|address| address.port());
    match listens {
        Some(port) if port == declared => Ok(declared),
        Some(port) => Err(invalid(
            "container.env",
            format!("{ADMIN_ADDRESS_ENV} listens on port {port}, but the first container port is {declared}"),
        )),
        None => Err(invalid(
            "container.env",
            format!(
                "needs {ADMIN_ADDRESS_ENV} as a literal HOST:PORT on the first container port ({declared})"
            ),
        )),
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> TemplateError {
    TemplateError::Invalid {
        field,
        reason: reason.into(),
    }
}

impl SidecarTemplate {
    /// Reads and checks the file the chart renders.
    pub fn load(path: &Path) -> Result<Self, TemplateError> {
        let read = |reason: String| TemplateError::Read {
            path: path.to_owned(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| read(e.to_string()))?;
        let file: TemplateFile = serde_yaml::from_str(&text).map_err(|e| read(e.to_string()))?;
        Self::new(file)
    }

    /// Checks a template: a native sidecar (`restartPolicy: Always`) with a literal
    /// `LEADERSHIP_SOCKET`, a volume mounted on the socket's folder, and a `runAsGroup`.
    pub fn new(file: TemplateFile) -> Result<Self, TemplateError> {
        let container = file.container;
        if container.name.is_empty() {
            return Err(invalid("container.name", "must not be empty"));
        }
        if container.image.as_deref().is_none_or(str::is_empty) {
            return Err(invalid("container.image", "must not be empty"));
        }
        if container.restart_policy.as_deref() != Some("Always") {
            return Err(invalid(
                "container.restartPolicy",
                "must be Always (a native sidecar: an init container that keeps running)",
            ));
        }
        let socket = container
            .env
            .iter()
            .flatten()
            .find(|e| e.name == SOCKET_ENV)
            .and_then(|e| e.value.clone())
            .filter(|s| s.starts_with('/'))
            .ok_or_else(|| {
                invalid(
                    "container.env",
                    format!("needs {SOCKET_ENV} with an absolute path"),
                )
            })?;
        let mount_path = Path::new(&socket)
            .parent()
            .map(|p| p.display().to_string())
            .filter(|p| p != "/")
            .ok_or_else(|| {
                invalid(
                    "container.env",
                    format!("{SOCKET_ENV} must be in a folder of its own"),
                )
            })?;
        let volume = container
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.mount_path.trim_end_matches('/') == mount_path)
            .map(|m| m.name.clone())
            .ok_or_else(|| {
                invalid(
                    "container.volumeMounts",
                    format!("needs a volume mounted on {mount_path}"),
                )
            })?;
        let group = container
            .security_context
            .as_ref()
            .and_then(|s| s.run_as_group)
            .ok_or_else(|| {
                invalid(
                    "container.securityContext.runAsGroup",
                    "needed: the socket belongs to this group, which every container of the pod gets",
                )
            })?;
        let admin_port = admin_port(&container)?;
        if let Some(name) = &file.service_account_name {
            leadership::validate::unit_name(name)
                .map_err(|e| invalid("serviceAccountName", e.to_string()))?;
        }
        Ok(SidecarTemplate {
            container,
            socket,
            volume,
            mount_path,
            group,
            service_account_name: file.service_account_name,
            image_pull_secrets: file.image_pull_secrets.into_iter().map(|s| s.name).collect(),
            admin_port,
        })
    }

    /// The claim duration the template's sidecar runs with: its `LEADERSHIP_CLAIM_DURATION`
    /// (the chart's `sidecar.claimDuration`), or the sidecar's default.
    pub fn claim_duration(&self) -> Duration {
        self.container
            .env
            .iter()
            .flatten()
            .find(|e| e.name == "LEADERSHIP_CLAIM_DURATION")
            .and_then(|e| e.value.as_deref())
            .and_then(|text| validate::parse_duration(text).ok())
            .unwrap_or(DEFAULT_CLAIM_DURATION)
    }

    /// The sidecar's image.
    pub fn image(&self) -> &str {
        self.container.image.as_deref().unwrap_or_default()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A template like the chart's.
    pub(crate) const CHART_LIKE: &str = r#"
container:
  name: leadership
  image: ghcr.io/leadership-dev/leadership-sidecar:0.1.0
  restartPolicy: Always
  env:
    - name: LEADERSHIP_SOCKET
      value: /run/leadership/leadership.sock
    - name: POD_NAME
      valueFrom: {fieldRef: {fieldPath: metadata.name}}
    - name: POD_NAMESPACE
      valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
    - name: LEADERSHIP_ADMIN_ADDRESS
      value: 0.0.0.0:9476
  ports: [{name: leadership, containerPort: 9476}]
  readinessProbe: {httpGet: {path: /readyz, port: leadership}}
  livenessProbe: {httpGet: {path: /healthz, port: leadership}}
  securityContext: {runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532}
  volumeMounts: [{name: leadership, mountPath: /run/leadership}]
serviceAccountName: leadership-sidecar
imagePullSecrets: [{name: registry}]
"#;

    pub(crate) fn chart_like() -> SidecarTemplate {
        SidecarTemplate::new(serde_yaml::from_str(CHART_LIKE).unwrap()).unwrap()
    }

    #[test]
    fn the_socket_volume_and_group_come_from_the_container() {
        let template = chart_like();
        assert_eq!(template.socket, "/run/leadership/leadership.sock");
        assert_eq!(template.volume, "leadership");
        assert_eq!(template.mount_path, "/run/leadership");
        assert_eq!(template.group, 65532);
        assert_eq!(template.admin_port, 9476);
        assert_eq!(template.image_pull_secrets, ["registry"]);
        assert_eq!(
            template.service_account_name.as_deref(),
            Some("leadership-sidecar")
        );
    }

    #[test]
    fn a_template_that_cannot_work_is_refused_naming_the_field() {
        let cases = [
            (
                "restartPolicy: Always",
                "restartPolicy: OnFailure",
                "container.restartPolicy",
            ),
            ("runAsGroup: 65532", "fsGroupX: 1", "container.securityContext"),
            (
                "mountPath: /run/leadership}",
                "mountPath: /elsewhere}",
                "container.volumeMounts",
            ),
            (
                "value: /run/leadership/leadership.sock",
                "value: leadership.sock",
                "container.env",
            ),
            (
                "serviceAccountName: leadership-sidecar",
                "serviceAccountName: Bad_Name",
                "serviceAccountName",
            ),
            ("value: 0.0.0.0:9476", "value: 0.0.0.0:9000", "container.env"),
            (
                "  ports: [{name: leadership, containerPort: 9476}]\n",
                "",
                "container.ports",
            ),
        ];
        for (from, to, field) in cases {
            let text = CHART_LIKE.replace(from, to);
            let err = match serde_yaml::from_str::<TemplateFile>(&text) {
                Ok(file) => SidecarTemplate::new(file).unwrap_err().to_string(),
                Err(err) => err.to_string(),
            };
            assert!(err.contains(field), "{to}: {err}");
        }
    }
}
