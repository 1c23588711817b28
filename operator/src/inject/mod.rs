//! Sidecar injection, pure: a pod annotated `leadership.dev/application: APP` gets the sidecar.
//!
//! - [`annotations`]: what the annotations ask for, or a refusal naming the annotation;
//! - [`template`]: the sidecar as the chart renders it (one source with the chart's example);
//! - [`patch`]: the JSON patch that injects it, from the pod and the template.

pub mod annotations;
pub mod patch;
pub mod template;

pub use patch::{InjectError, Injection, inject};
pub use template::SidecarTemplate;
