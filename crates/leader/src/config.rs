//! Where the locks are, who this candidate is, and the timing.

use std::time::Duration;

use crate::LeaderError;

/// Upstream MIC's `--leader-election-namespace` default.
pub const DEFAULT_NAMESPACE: &str = "default";
/// Upstream MIC's `--leader-election-name` default: the name of both locks.
pub const DEFAULT_NAME: &str = "aad-pod-identity-mic";
/// Upstream MIC's `--leader-election-duration` default.
pub const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(15);

/// Leader election settings. Both locks, the Lease and upstream's Endpoints, live at
/// `namespace/name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderConfig {
    pub namespace: String,
    pub name: String,
    /// The holder identity written into the locks (upstream: the pod's hostname).
    pub identity: String,
    /// How long others wait after the last renewal they saw before taking over.
    pub lease_duration: Duration,
    /// A leader that has not renewed for this long stops leading.
    pub renew_deadline: Duration,
    /// How often a leader renews and a candidate retries.
    pub retry_period: Duration,
}

impl LeaderConfig {
    /// Upstream's defaults for `identity`: lock `default/aad-pod-identity-mic`, lease 15 s.
    pub fn new(identity: impl Into<String>) -> Self {
        Self {
            namespace: DEFAULT_NAMESPACE.to_owned(),
            name: DEFAULT_NAME.to_owned(),
            identity: identity.into(),
            lease_duration: DEFAULT_LEASE_DURATION,
            renew_deadline: DEFAULT_LEASE_DURATION / 2,
            retry_period: DEFAULT_LEASE_DURATION / 4,
        }
    }

    /// The lock's place.
    pub fn with_lock(mut self, namespace: impl Into<String>, name: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self.name = name.into();
        self
    }

    /// Sets the lease duration and derives the rest as upstream MIC does: renew deadline half of
    /// it, retry period a quarter.
    pub fn with_lease_duration(mut self, lease_duration: Duration) -> Self {
        self.lease_duration = lease_duration;
        self.renew_deadline = lease_duration / 2;
        self.retry_period = lease_duration / 4;
        self
    }

    /// Checks what client-go checks, plus that the lease is at least a second (the locks store
    /// whole seconds).
    pub fn validate(&self) -> Result<(), LeaderError> {
        let invalid = |reason: String| Err(LeaderError::InvalidConfig(reason));
        if self.identity.is_empty() {
            return invalid("the identity is empty".to_owned());
        }
        if self.namespace.is_empty() || self.name.is_empty() {
            return invalid("the lock namespace and name must be set".to_owned());
        }
        if self.lease_duration < Duration::from_secs(1) {
            return invalid(format!(
                "the lease duration {:?} is under a second",
                self.lease_duration
            ));
        }
        if self.renew_deadline >= self.lease_duration {
            return invalid(format!(
                "the renew deadline {:?} must be shorter than the lease duration {:?}",
                self.renew_deadline, self.lease_duration
            ));
        }
        if self.retry_period.is_zero() || self.retry_period >= self.renew_deadline {
            return invalid(format!(
                "the retry period {:?} must be positive and shorter than the renew deadline {:?}",
                self.retry_period, self.renew_deadline
            ));
        }
        Ok(())
    }
}

/// The machine's hostname, upstream's default identity (`os.Hostname()`; in a pod, its name).
pub fn hostname() -> Result<String, LeaderError> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map_err(|e| LeaderError::InvalidConfig(format!("cannot read the hostname: {e}")))?;
    let name = name.trim();
    if name.is_empty() {
        return Err(LeaderError::InvalidConfig(
            "the hostname is empty".to_owned(),
        ));
    }
    Ok(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_upstreams() {
        let config = LeaderConfig::new("mic-0");
        assert_eq!(config.namespace, "default");
        assert_eq!(config.name, "aad-pod-identity-mic");
        assert_eq!(config.lease_duration, Duration::from_secs(15));
        assert_eq!(config.renew_deadline, Duration::from_millis(7500));
        assert_eq!(config.retry_period, Duration::from_millis(3750));
        config.validate().unwrap();
    }

    #[test]
    fn inconsistent_timing_is_refused() {
        let base = LeaderConfig::new("mic-0");
        let cases = [
            LeaderConfig {
                identity: String::new(),
                ..base.clone()
            },
            base.clone().with_lock("", "x"),
            base.clone().with_lease_duration(Duration::from_millis(900)),
            LeaderConfig {
                renew_deadline: base.lease_duration,
                ..base.clone()
            },
            LeaderConfig {
                retry_period: base.renew_deadline,
                ..base.clone()
            },
            LeaderConfig {
                retry_period: Duration::ZERO,
                ..base.clone()
            },
        ];
        for config in cases {
            assert!(config.validate().is_err(), "{config:?}");
        }
    }

    #[test]
    fn the_hostname_is_read() {
        assert!(!hostname().unwrap().is_empty());
    }
}
