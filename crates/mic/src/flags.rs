//! The `mic` command line: upstream's flags (Go `flag` style: `-x` and `--x` both work,
//! booleans as `--x` or `--x=false`, durations as `90s`, `3m`, `1h30m`), its environment, and
//! podid's own flags. Flags that no longer mean anything are accepted and logged.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Parser};

use crate::MatchOptions;
use crate::controller::{Backoff, Settings, Timing};

/// `FORCENAMESPACED=true` (exactly) turns namespaced matching on, as upstream.
pub const FORCE_NAMESPACED_ENV: &str = "FORCENAMESPACED";
/// The namespace MIC runs in; upstream refuses to start without it.
pub const POD_NAMESPACE_ENV: &str = "MIC_POD_NAMESPACE";

/// podid's MIC: assigns Azure user-assigned identities to the VMs and scale sets of pods that
/// AzureIdentityBindings select.
#[derive(Debug, Clone, Parser)]
#[command(name = "mic", version, disable_version_flag = true)]
pub struct Args {
    /// Path to a kubeconfig; empty: the in-cluster configuration.
    #[arg(long, default_value = "")]
    pub kubeconfig: String,
    /// Path to azure.json; empty: the cloud config comes from the environment.
    #[arg(long, default_value = "")]
    pub cloudconfig: String,
    /// Every identity serves only pods and bindings of its own namespace.
    #[arg(long = "forceNamespaced", action = ArgAction::Set, num_args = 0..=1,
          require_equals = true, default_missing_value = "true", default_value = "false")]
    pub force_namespaced: bool,
    /// Print the version and exit.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value = "false")]
    pub version: bool,
    /// A full cycle at least this often.
    #[arg(long = "syncRetryDuration", default_value = "3600s", value_parser = go_duration)]
    pub sync_retry_duration: Duration,
    /// The holder identity in the lock; default the host name.
    #[arg(long = "leader-election-instance", default_value = "")]
    pub leader_election_instance: String,
    #[arg(long = "leader-election-namespace", default_value = "default")]
    pub leader_election_namespace: String,
    #[arg(long = "leader-election-name", default_value = "aad-pod-identity-mic")]
    pub leader_election_name: String,
    /// The lease duration; renew deadline half of it, retry period a quarter.
    #[arg(long = "leader-election-duration", default_value = "15s", value_parser = go_duration)]
    pub leader_election_duration: Duration,
    #[arg(long = "http-probe-port", default_value_t = 8080)]
    pub http_probe_port: u16,
    #[arg(long = "prometheus-port", default_value_t = 8888)]
    pub prometheus_port: u16,
    /// Kubernetes writes in flight at once.
    #[arg(long = "createDeleteBatch", default_value_t = 20)]
    pub create_delete_batch: usize,
    /// Accepted; podid's Kubernetes client does not rate-limit itself.
    #[arg(long = "clientQps", default_value_t = 5.0)]
    pub client_qps: f64,
    /// Comma-separated client IDs of identities never removed from a machine.
    #[arg(long = "immutable-user-msis", default_value = "")]
    pub immutable_user_msis: String,
    #[arg(long = "config-map-name", default_value = "aad-pod-identity-config")]
    pub config_map_name: String,
    #[arg(
        long = "type-upgrade-status-key",
        default_value = "type-upgrade-status"
    )]
    pub type_upgrade_status_key: String,
    #[arg(long = "enable-type-upgrade", action = ArgAction::Set, num_args = 0..=1,
          require_equals = true, default_missing_value = "true", default_value = "true")]
    pub enable_type_upgrade: bool,
    /// Times identities ARM refuses are dropped and the rest of the PATCH sent again.
    #[arg(long = "update-user-msi-max-retry", default_value_t = 2)]
    pub update_user_msi_max_retry: u32,
    /// The first backoff after a failed ARM call (doubling, at most 5 minutes).
    #[arg(long = "update-user-msi-retry-interval", default_value = "1s", value_parser = go_duration)]
    pub update_user_msi_retry_interval: Duration,
    /// Each machine's identities are read again this often and missing ones re-added.
    #[arg(long = "identity-assignment-reconcile-interval", default_value = "3m", value_parser = go_duration)]
    pub identity_assignment_reconcile_interval: Duration,
    /// `text` or `json`.
    #[arg(long = "log-format", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    /// Appended to the User-Agent of ARM and Entra ID requests.
    #[arg(long = "custom-user-agent", default_value = "")]
    pub custom_user_agent: String,

    /// Deprecated (upstream: pprof on localhost:6060); accepted and ignored.
    #[arg(long = "enableProfile", action = ArgAction::Set, num_args = 0..=1,
          require_equals = true, default_missing_value = "true")]
    pub enable_profile: Option<bool>,
    /// Deprecated no-op upstream too.
    #[arg(long = "enableScaleFeatures", action = ArgAction::Set, num_args = 0..=1,
          require_equals = true, default_missing_value = "true")]
    pub enable_scale_features: Option<bool>,
    /// klog's verbosity; accepted, use RUST_LOG.
    #[arg(long = "v", short = 'v')]
    pub klog_v: Option<String>,
    /// klog's; accepted and ignored (logs always go to stderr).
    #[arg(long = "logtostderr", action = ArgAction::Set, num_args = 0..=1,
          require_equals = true, default_missing_value = "true")]
    pub logtostderr: Option<bool>,
    #[arg(long = "alsologtostderr", action = ArgAction::Set, num_args = 0..=1,
          require_equals = true, default_missing_value = "true")]
    pub alsologtostderr: Option<bool>,

    /// podid: how long an identity stays on a machine after the last pod that needed it.
    #[arg(long = "removal-grace-period", default_value = "30s", value_parser = go_duration)]
    pub removal_grace_period: Duration,
    /// podid: the IMDS MIC asks for its ARM token when azure.json says
    /// `useManagedIdentityExtension`.
    #[arg(long = "imds-endpoint", default_value = podid_azure::credential::IMDS_ENDPOINT)]
    pub imds_endpoint: url::Url,
    /// podid: PEM certificates trusted for ARM and Entra ID besides the system's (a private
    /// cloud's CA). Default: the file SSL_CERT_FILE names, if set.
    #[arg(long = "azure-ca-file", env = "SSL_CERT_FILE")]
    pub azure_ca_file: Option<PathBuf>,
    /// podid: how often the cloud config file is checked for changes.
    #[arg(long = "cloudconfig-check-interval", default_value = "5s", value_parser = go_duration)]
    pub cloudconfig_check_interval: Duration,
}

impl Args {
    /// Parses a command line written Go-style.
    pub fn parse_go_style(args: impl IntoIterator<Item = OsString>) -> Result<Self, clap::Error> {
        Self::try_parse_from(go_style(args))
    }

    /// Namespaced matching: the flag, or `FORCENAMESPACED=true`.
    pub fn force_namespaced(&self, env: Option<&str>) -> bool {
        self.force_namespaced || env == Some("true")
    }

    /// The controller's settings these flags give.
    pub fn settings(&self, force_namespaced_env: Option<&str>) -> Settings {
        let defaults = Settings::default();
        Settings {
            match_options: MatchOptions {
                force_namespaced: self.force_namespaced(force_namespaced_env),
            },
            immutable_client_ids: self
                .immutable_user_msis
                .split(',')
                .map(str::trim)
                .filter(|id| !id.is_empty())
                .map(str::to_owned)
                .collect(),
            removal_grace: self.removal_grace_period,
            resync: self.sync_retry_duration,
            timing: Timing {
                retry: Backoff {
                    base: self.update_user_msi_retry_interval,
                    ..defaults.timing.retry
                },
                refresh: self.identity_assignment_reconcile_interval,
                ..defaults.timing
            },
            max_identity_retries: self.update_user_msi_max_retry,
            write_concurrency: self.create_delete_batch.max(1),
            ..defaults
        }
    }

    /// One line per accepted flag that has no effect, for the log.
    pub fn deprecations(&self) -> Vec<&'static str> {
        let mut notes = Vec::new();
        if self.enable_profile.is_some() {
            notes.push("--enableProfile is deprecated and ignored: podid serves no pprof");
        }
        if self.enable_scale_features.is_some() {
            notes.push("--enableScaleFeatures is deprecated and has no effect");
        }
        if self.klog_v.is_some() || self.logtostderr.is_some() || self.alsologtostderr.is_some() {
            notes.push(
                "klog flags (-v, --logtostderr, --alsologtostderr) are ignored: set RUST_LOG",
            );
        }
        if self.client_qps != 5.0 {
            notes.push(
                "--clientQps is ignored: podid's Kubernetes client does not rate-limit itself",
            );
        }
        notes
    }
}

/// Go's `flag` accepts `-name` like `--name`; clap does not, so single-dash long flags get a
/// second dash. `-` alone, `--…`, and single-letter flags (`-v`) stay as they are.
pub fn go_style(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut args = args.into_iter();
    let mut out: Vec<OsString> = args.next().into_iter().collect();
    for arg in args {
        let converted = arg.to_str().and_then(|text| {
            let rest = text.strip_prefix('-')?;
            let name = rest.split('=').next().unwrap_or_default();
            (!rest.starts_with('-') && name.len() > 1).then(|| OsString::from(format!("-{text}")))
        });
        out.push(converted.unwrap_or(arg));
    }
    out
}

/// A duration in Go's syntax: `0`, or numbers with units `ns`, `us`, `µs`, `ms`, `s`, `m`, `h`
/// (`1h30m`, `1.5s`, `300ms`). Negative durations are refused.
pub fn go_duration(text: &str) -> Result<Duration, String> {
    let invalid = || format!("invalid duration {text:?} (examples: 90s, 3m, 1h30m, 500ms)");
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = text;
    let mut total = 0f64;
    if rest.is_empty() {
        return Err(invalid());
    }
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(invalid)?;
        let number: f64 = rest[..number_len].parse().map_err(|_| invalid())?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(invalid()),
        };
        total += number * seconds;
        rest = &rest[unit_len..];
    }
    Duration::try_from_secs_f64(total).map_err(|_| invalid())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Args {
        let mut all = vec!["mic"];
        all.extend_from_slice(args);
        Args::parse_go_style(all.into_iter().map(OsString::from)).expect("parses")
    }

    #[test]
    fn defaults_are_upstreams() {
        let args = parse(&[]);
        assert_eq!(args.sync_retry_duration, Duration::from_secs(3600));
        assert_eq!(args.leader_election_name, "aad-pod-identity-mic");
        assert_eq!(args.leader_election_namespace, "default");
        assert_eq!(args.leader_election_duration, Duration::from_secs(15));
        assert_eq!((args.http_probe_port, args.prometheus_port), (8080, 8888));
        assert_eq!(args.create_delete_batch, 20);
        assert_eq!(args.update_user_msi_max_retry, 2);
        assert_eq!(args.update_user_msi_retry_interval, Duration::from_secs(1));
        assert_eq!(
            args.identity_assignment_reconcile_interval,
            Duration::from_secs(180)
        );
        assert_eq!(args.removal_grace_period, Duration::from_secs(30));
        assert_eq!(args.imds_endpoint.as_str(), "http://169.254.169.254/");
        assert!(args.enable_type_upgrade);
        assert!(!args.force_namespaced(None));
        assert!(args.deprecations().is_empty());
    }

    #[test]
    fn single_and_double_dashes_both_work() {
        let args = parse(&[
            "-cloudconfig=/etc/kubernetes/azure.json",
            "--forceNamespaced",
            "-syncRetryDuration",
            "1h30m",
            "--immutable-user-msis=A,b ,",
            "-http-probe-port=9090",
            "--logtostderr",
            "-v=2",
            "--enableScaleFeatures=true",
        ]);
        assert_eq!(args.cloudconfig, "/etc/kubernetes/azure.json");
        assert!(args.force_namespaced(None));
        assert_eq!(args.sync_retry_duration, Duration::from_secs(5400));
        assert_eq!(args.http_probe_port, 9090);
        let settings = args.settings(None);
        assert_eq!(settings.immutable_client_ids, vec!["A", "b"]);
        assert_eq!(args.deprecations().len(), 2);
    }

    #[test]
    fn booleans_take_only_attached_values() {
        let args = parse(&["--forceNamespaced=false", "--enable-type-upgrade=false"]);
        assert!(!args.force_namespaced(None));
        assert!(!args.enable_type_upgrade);
        assert!(parse(&[]).force_namespaced(Some("true")));
        assert!(!parse(&[]).force_namespaced(Some("True")));
    }

    #[test]
    fn a_bad_log_format_is_refused() {
        let args = ["mic", "--log-format=yaml"].map(OsString::from);
        assert!(Args::parse_go_style(args).is_err());
    }

    #[test]
    fn go_durations_parse() {
        for (text, expected) in [
            ("0", Duration::ZERO),
            ("100ms", Duration::from_millis(100)),
            ("1.5s", Duration::from_millis(1500)),
            ("3m", Duration::from_secs(180)),
            ("1h2m3s", Duration::from_secs(3723)),
        ] {
            assert_eq!(go_duration(text), Ok(expected), "{text}");
        }
        for text in ["", "5", "-1s", "1d", "s"] {
            assert!(go_duration(text).is_err(), "{text}");
        }
    }
}
