//! Validation of names and durations (SPEC E6, C7): bad input is refused before anything changes.

use std::time::Duration;

use crate::{Error, Result};

/// Checks an application name: a DNS label (RFC 1123), as it names a Kubernetes object.
pub fn application_name(name: &str) -> Result<()> {
    dns_label(name).map_err(|reason| Error::invalid("application", reason))
}

/// Checks a unit name: a Pod name, that is a DNS subdomain (RFC 1123).
pub fn unit_name(name: &str) -> Result<()> {
    dns_subdomain(name).map_err(|reason| Error::invalid("unit", reason))
}

/// Checks the name of an entity that pins an application; entities follow the unit name rules.
pub fn entity_name(name: &str) -> Result<()> {
    dns_subdomain(name).map_err(|reason| Error::invalid("entity", reason))
}

/// The longest reason an app may give for not leading, in characters.
pub const MAX_INELIGIBLE_REASON: usize = 256;

/// Checks the reason an app gives for not leading (`None`: it may lead): one line, at most
/// [`MAX_INELIGIBLE_REASON`] characters.
pub fn ineligible_reason(reason: Option<&str>) -> Result<()> {
    let Some(reason) = reason else {
        return Ok(());
    };
    if reason.chars().count() > MAX_INELIGIBLE_REASON {
        return Err(Error::invalid(
            "reason",
            format!("is longer than {MAX_INELIGIBLE_REASON} characters"),
        ));
    }
    if reason.chars().any(char::is_control) {
        return Err(Error::invalid("reason", "must be one line of printable text"));
    }
    Ok(())
}

fn dns_label(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > 63 {
        return Err(format!("{:?} is longer than 63 characters", truncate(name)));
    }
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let ok_ends = !name.starts_with('-') && !name.ends_with('-');
    if ok_chars && ok_ends {
        Ok(())
    } else {
        Err(format!(
            "{:?} must consist of lower case letters, digits and '-', and start and end with a letter or digit",
            truncate(name)
        ))
    }
}

fn dns_subdomain(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > 253 {
        return Err(format!("{:?} is longer than 253 characters", truncate(name)));
    }
    name.split('.').try_for_each(dns_label).map_err(|_| {
        format!(
            "{:?} must be a DNS subdomain: lower case letters, digits, '-' and '.', each part starting and ending with a letter or digit",
            truncate(name)
        )
    })
}

fn truncate(name: &str) -> &str {
    match name.char_indices().nth(64) {
        Some((i, _)) => &name[..i],
        None => name,
    }
}

/// The accepted range of claim durations (SPEC C7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DurationLimits {
    /// The shortest accepted duration.
    pub min: Duration,
    /// The longest accepted duration.
    pub max: Duration,
}

impl Default for DurationLimits {
    /// 2 s to 5 min.
    fn default() -> Self {
        DurationLimits {
            min: Duration::from_secs(2),
            max: Duration::from_secs(300),
        }
    }
}

impl DurationLimits {
    /// Checks a claim duration against the range.
    pub fn check(&self, duration: Duration) -> Result<()> {
        if duration < self.min || duration > self.max {
            return Err(Error::invalid(
                "duration",
                format!(
                    "{duration:?} is outside the accepted range {:?} to {:?}",
                    self.min, self.max
                ),
            ));
        }
        Ok(())
    }
}

/// Parses a human duration such as `4s`, `500ms`, `2m`, `1h` or `1m30s`.
pub fn parse_duration(text: &str) -> Result<Duration> {
    let bad = || {
        Error::invalid(
            "duration",
            format!("{text:?} is not a duration like 4s, 500ms or 2m"),
        )
    };
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let value: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let part = match &rest[..unit_len] {
            "ms" => Duration::from_millis(value),
            "s" => Duration::from_secs(value),
            "m" => Duration::from_secs(value.checked_mul(60).ok_or_else(bad)?),
            "h" => Duration::from_secs(value.checked_mul(3600).ok_or_else(bad)?),
            _ => return Err(bad()),
        };
        total = total.checked_add(part).ok_or_else(bad)?;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e6_application_names_are_dns_labels() {
        for good in ["web", "a", "db-0", &"x".repeat(63)] {
            assert!(application_name(good).is_ok(), "{good}");
        }
        for bad in ["", "Web", "-web", "web-", "web_1", "a.b", &"x".repeat(64), "wéb"] {
            let err = application_name(bad).unwrap_err();
            assert!(
                matches!(
                    err,
                    Error::Invalid {
                        field: "application",
                        ..
                    }
                ),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn e6_unit_names_are_pod_names() {
        for good in ["web-0", "web-5d8f7c9b6-x2x9q", "a.b-c.d"] {
            assert!(unit_name(good).is_ok(), "{good}");
        }
        for bad in ["", "web/0", "Web-0", "a..b", ".a", &"x".repeat(254)] {
            let err = unit_name(bad).unwrap_err();
            assert!(
                matches!(err, Error::Invalid { field: "unit", .. }),
                "{bad}: {err}"
            );
            assert_eq!(err.code(), "BadRequest");
        }
    }

    #[test]
    fn c7_durations_outside_the_range_are_refused() {
        let limits = DurationLimits::default();
        assert!(limits.check(Duration::from_secs(2)).is_ok());
        assert!(limits.check(Duration::from_secs(300)).is_ok());
        assert!(limits.check(Duration::from_millis(1999)).is_err());
        assert!(limits.check(Duration::from_secs(301)).is_err());
        let custom = DurationLimits {
            min: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        assert!(custom.check(Duration::from_millis(500)).is_ok());
        assert!(custom.check(Duration::from_secs(2)).is_err());
    }

    #[test]
    fn durations_parse_like_flags() {
        assert_eq!(parse_duration("4s").unwrap(), Duration::from_secs(4));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        for bad in ["", "4", "s", "4x", "-4s", "4.5s", "99999999999999999999h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
