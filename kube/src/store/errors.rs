//! What a Kubernetes error lets the caller infer: `Forbidden`, a missing CRD (with an install
//! hint), `Invalid`, or `Unavailable` (no inference).

use leadership::Error;

/// A copy of an API error's status (other errors become their message with every cause, such as
/// "Connection refused"), for mapping.
pub(super) fn clone_api_error(err: &kube::Error) -> kube::Error {
    match err {
        kube::Error::Api(status) => kube::Error::Api(status.clone()),
        other => {
            let mut text = other.to_string();
            let mut cause = std::error::Error::source(other);
            while let Some(inner) = cause {
                text = format!("{text}: {inner}");
                cause = inner.source();
            }
            kube::Error::Service(text.into())
        }
    }
}

/// Maps a Kubernetes error to the leadership error that says what the caller may infer.
pub(super) fn from_kube(action: &str, err: kube::Error) -> Error {
    match &err {
        kube::Error::Api(status) if status.code == 403 => Error::Forbidden {
            context: format!("{action}: {}", status.message),
        },
        // A missing resource in a known group, or a group the server does not serve at all.
        kube::Error::Api(status)
            if status.code == 404
                && (status
                    .message
                    .contains("the server could not find the requested resource")
                    || status.message.contains("page not found")) =>
        {
            Error::Unavailable {
                context: format!(
                    "{action}: the LeadershipLease CRD is not installed (kubectl apply -f crds/leadershiplease.yaml, or install the chart)"
                ),
                source: None,
            }
        }
        kube::Error::Api(status) if status.code == 422 => {
            Error::invalid("leadershiplease", format!("{action}: {}", status.message))
        }
        _ => Error::Unavailable {
            context: action.to_owned(),
            source: Some(Box::new(err)),
        },
    }
}

pub(super) fn is_conflict(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(status) if status.code == 409)
}

pub(super) fn is_not_found(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(status) if status.code == 404)
}
