//! Upstream AAD Pod Identity's MIC (v1.8.17, unmodified) as a side-by-side test tool, for
//! migration tests and benchmarks: `scripts/upstream-mic build` caches the binary, and
//! [`UpstreamMic::start`] runs it against the test control plane and an Azure emulator.
//!
//! Upstream was written to talk to real Azure, so it runs only inside a network namespace with
//! no route out (`scripts/in-loopback-netns`): [`ensure_no_route_out`] is checked before every
//! start, and a namespace with a route out refuses.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use podid_emulator::server::netns::{parse_ipv4_routes, parse_ipv6_routes, route_out};
use serde_json::json;
use tokio::process::{Child, Command};

use crate::names::unique_name;

/// The upstream release `scripts/upstream-mic` builds.
pub const UPSTREAM_MIC_VERSION: &str = "1.8.17";

/// What an upstream binary needs that the machine does not give.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error(
        "upstream MIC v{UPSTREAM_MIC_VERSION} is not built (no {path}); run scripts/upstream-mic build"
    )]
    NotBuilt { path: String },

    #[error(
        "refusing to run upstream's MIC: this network namespace has a route out ({route}); run \
         the test through scripts/in-loopback-netns"
    )]
    RouteOut { route: String },

    #[error("cannot read this namespace's routes ({0}); refusing to run upstream's MIC")]
    RoutesUnreadable(String),

    #[error("cannot prepare or start upstream's MIC: {0}")]
    Io(#[from] std::io::Error),
}

/// The cached binary, or [`UpstreamError::NotBuilt`] naming the command that builds it.
pub fn upstream_mic_binary() -> Result<PathBuf, UpstreamError> {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_default();
    let path = cache
        .join("podid")
        .join(format!("upstream-mic-v{UPSTREAM_MIC_VERSION}"))
        .join("bin")
        .join("mic");
    if path.is_file() {
        Ok(path)
    } else {
        Err(UpstreamError::NotBuilt {
            path: path.display().to_string(),
        })
    }
}

/// Succeeds only when no route of this process's network namespace can carry a packet beyond
/// loopback (the emulator's check of the kernel's route tables, which fails closed).
pub fn ensure_no_route_out() -> Result<(), UpstreamError> {
    let read = |file: &str| {
        std::fs::read_to_string(file)
            .map_err(|e| UpstreamError::RoutesUnreadable(format!("{file}: {e}")))
    };
    let unreadable = |e: podid_emulator::server::netns::RouteParseError| {
        UpstreamError::RoutesUnreadable(e.to_string())
    };
    let mut routes = parse_ipv4_routes(&read("/proc/net/route")?).map_err(unreadable)?;
    routes.extend(parse_ipv6_routes(&read("/proc/net/ipv6_route")?).map_err(unreadable)?);
    match route_out(&routes) {
        Some(route) => Err(UpstreamError::RouteOut {
            route: route.to_string(),
        }),
        None => Ok(()),
    }
}

/// The Azure side upstream's MIC talks to: an emulator's endpoints and CA, and the service
/// principal and scope written into its azure.json.
#[derive(Debug, Clone)]
pub struct AzureSide {
    /// ARM's base URL (`https://127.0.0.1:<port>/`).
    pub arm_base: String,
    /// Entra ID's base URL.
    pub entra_base: String,
    /// The CA that signed both, given to Go as `SSL_CERT_FILE`.
    pub ca_file: PathBuf,
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret: String,
    pub subscription_id: String,
    pub resource_group: String,
}

/// How to run it.
#[derive(Debug, Clone)]
pub struct UpstreamMicOptions {
    pub kubeconfig: PathBuf,
    pub azure: AzureSide,
    /// `MIC_POD_NAMESPACE`.
    pub pod_namespace: String,
    /// `--leader-election-instance`.
    pub instance: String,
    /// `--leader-election-namespace` (upstream's default is `default`).
    pub leader_election_namespace: String,
    /// Further flags, e.g. `--leader-election-duration=2s`.
    pub extra_args: Vec<String>,
}

/// A running upstream MIC. Killed when dropped; its working directory (azure.json, the
/// environment file, the log) is removed then too.
pub struct UpstreamMic {
    child: Child,
    dir: PathBuf,
}

impl UpstreamMic {
    /// Writes azure.json (`cloud: AzureStackCloud`) and the go-autorest environment file naming
    /// the emulator's ARM and Entra ID, then starts the binary with `--kubeconfig`,
    /// `--cloudconfig`, free probe and metrics ports, `SSL_CERT_FILE` = the emulator's CA, and
    /// no proxy variables. Refuses outside a namespace with no route out.
    pub async fn start(options: &UpstreamMicOptions) -> Result<Self, UpstreamError> {
        ensure_no_route_out()?;
        let binary = upstream_mic_binary()?;
        let dir = std::env::temp_dir().join(unique_name("podid-upstream-mic"));
        std::fs::create_dir_all(&dir)?;
        let azure = &options.azure;
        let cloud_config = dir.join("azure.json");
        std::fs::write(
            &cloud_config,
            json!({
                "cloud": "AzureStackCloud",
                "tenantId": azure.tenant_id,
                "aadClientId": azure.client_id,
                "aadClientSecret": azure.client_secret,
                "subscriptionId": azure.subscription_id,
                "resourceGroup": azure.resource_group,
                "vmType": "vmss",
                "useManagedIdentityExtension": false,
            })
            .to_string(),
        )?;
        let environment = dir.join("environment.json");
        std::fs::write(
            &environment,
            json!({
                "name": "AzureStackCloud",
                "resourceManagerEndpoint": azure.arm_base,
                "activeDirectoryEndpoint": azure.entra_base,
                "tokenAudience": azure.arm_base,
            })
            .to_string(),
        )?;
        let log = std::fs::File::create(dir.join("mic.log"))?;
        let mut command = Command::new(binary);
        command
            .arg(format!("--kubeconfig={}", options.kubeconfig.display()))
            .arg(format!("--cloudconfig={}", cloud_config.display()))
            .arg(format!(
                "--http-probe-port={}",
                crate::free_loopback_port()?
            ))
            .arg(format!(
                "--prometheus-port={}",
                crate::free_loopback_port()?
            ))
            .arg(format!("--leader-election-instance={}", options.instance))
            .arg(format!(
                "--leader-election-namespace={}",
                options.leader_election_namespace
            ))
            .args(["--logtostderr", "-v=2"])
            .args(&options.extra_args)
            .env("MIC_POD_NAMESPACE", &options.pod_namespace)
            .env("AZURE_ENVIRONMENT_FILEPATH", &environment)
            .env("SSL_CERT_FILE", &azure.ca_file)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        crate::without_proxies(&mut command);
        let child = command.spawn()?;
        Ok(Self { child, dir })
    }

    /// What it logged so far (klog to stderr, and stdout).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("mic.log")).unwrap_or_default()
    }

    /// Whether it is still running; `Some(status)` once it exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The directory holding azure.json, the environment file and the log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for UpstreamMic {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_binary_names_the_build_command() {
        let err = UpstreamError::NotBuilt {
            path: "/x/mic".into(),
        };
        assert!(err.to_string().contains("run scripts/upstream-mic build"));
    }
}
