//! Test support for podid's integration tests: one real kube-apiserver + etcd per test run (see
//! `scripts/control-plane`), podid's CRDs and warning policies installed, fresh namespaces,
//! impersonated clients, server-side apply of YAML, strict creates that keep the API server's
//! warnings, and polling.
//!
//! ```no_run
//! # async fn example() {
//! let env = podid_testkit::TestEnv::get().await;
//! let ns = env.namespace("demo").await;
//! let client = env.admin();
//! # let _ = (ns, client);
//! # }
//! ```

mod apply;
mod crds;
mod error;
mod kubelet;
mod loopback;
mod names;
mod plane;
mod policies;
mod process;
mod rbac;
mod upstream;
mod wait;
mod warnings;

use std::fmt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use tokio::sync::OnceCell;

pub use apply::{apply_yaml, parse_documents};
pub use error::Error;
pub use kubelet::{
    create_node, create_pod, delete_pod_now, node_with_provider_id, pod_on_node, running_status,
    set_pod_running,
};
pub use loopback::ensure_loopback;
pub use names::unique_name;
pub use plane::KUBECONFIG_ENV;
pub use process::{free_loopback_port, logged_listener, without_proxies};
pub use rbac::{
    CapturedLog, Outcome, Permission, ShippedRbac, assert_every_permission_needed, capture_log,
};
pub use upstream::{
    AzureSide, UPSTREAM_MIC_VERSION, UpstreamError, UpstreamMic, UpstreamMicOptions,
    ensure_no_route_out, upstream_mic_binary,
};
pub use wait::{Observation, try_wait_for, wait_for};
pub use warnings::{Written, create_strict};

/// Field manager of every server-side apply made by the test kit.
pub const FIELD_MANAGER: &str = "podid-testkit";

/// The control plane shared by all tests of this process.
///
/// Only the [`Config`] (and its file) is kept: a kube [`Client`] belongs to the tokio runtime that built it, and
/// every `#[tokio::test]` has its own runtime, so each call builds a fresh client.
pub struct TestEnv {
    config: Config,
    kubeconfig: PathBuf,
}

static ENV: OnceCell<Result<TestEnv, String>> = OnceCell::const_new();

impl TestEnv {
    /// The shared environment, prepared on first use: control plane found or started, CRDs
    /// installed and served, warning policies in effect. Panics with the reason when that is
    /// impossible.
    pub async fn get() -> &'static TestEnv {
        let env = ENV
            .get_or_init(|| async { Self::prepare().await.map_err(|e| e.to_string()) })
            .await;
        match env {
            Ok(env) => env,
            Err(reason) => panic!("the test control plane is unavailable: {reason}"),
        }
    }

    async fn prepare() -> Result<TestEnv, Error> {
        let path = plane::kubeconfig_path().await?;
        let config = load_config(&path).await?;
        let env = TestEnv {
            config,
            kubeconfig: path,
        };
        crds::install(&env.admin()).await?;
        policies::install(&env.admin()).await?;
        Ok(env)
    }

    /// The admin kubeconfig file, for programs run beside the tests (upstream's MIC).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// A cluster-admin client (`system:masters`).
    pub fn admin(&self) -> Client {
        self.client(self.config.clone())
    }

    /// A client acting as ServiceAccount `namespace/name` through impersonation. The
    /// ServiceAccount need not exist; the API server adds its groups itself.
    pub fn as_service_account(&self, namespace: &str, name: &str) -> Client {
        self.as_identity(format!("system:serviceaccount:{namespace}:{name}"), None)
    }

    /// A client acting as `user` in `groups` through impersonation.
    pub fn as_user(&self, user: &str, groups: &[&str]) -> Client {
        let groups = groups.iter().map(|g| (*g).to_owned()).collect();
        self.as_identity(user.to_owned(), Some(groups))
    }

    fn as_identity(&self, user: String, groups: Option<Vec<String>>) -> Client {
        let mut config = self.config.clone();
        config.auth_info.impersonate = Some(user);
        config.auth_info.impersonate_groups = groups;
        self.client(config)
    }

    fn client(&self, config: Config) -> Client {
        Client::try_from(config)
            .unwrap_or_else(|e| panic!("cannot build a client for the test control plane: {e}"))
    }

    /// Creates a namespace with a fresh name starting with `prefix`. Namespaces never finish
    /// deleting without kube-controller-manager, so they are not deleted either.
    pub async fn namespace(&self, prefix: &str) -> TestNamespace {
        let name = unique_name(prefix);
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        Api::<Namespace>::all(self.admin())
            .create(&PostParams::default(), &namespace)
            .await
            .unwrap_or_else(|e| panic!("cannot create namespace {name}: {e}"));
        TestNamespace { name }
    }
}

/// A namespace created for one test.
#[derive(Debug, Clone)]
pub struct TestNamespace {
    name: String,
}

impl TestNamespace {
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for TestNamespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

async fn load_config(path: &Path) -> Result<Config, Error> {
    let kubeconfig_error = |source| Error::Kubeconfig {
        path: path.display().to_string(),
        source,
    };
    let kubeconfig = Kubeconfig::read_from(path).map_err(kubeconfig_error)?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(kubeconfig_error)?;
    let url = config.cluster_url.to_string();
    ensure_loopback(&url, config.cluster_url.host())?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn load_with_server(server: &str) -> Result<Config, Error> {
        let path = std::env::temp_dir().join(unique_name("podid-testkit-kubeconfig"));
        let kubeconfig = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\n\
             users:\n- name: u\n  user:\n    token: not-a-secret\ncontexts:\n- name: x\n  context:\n    \
             cluster: c\n    user: u\ncurrent-context: x\n"
        );
        std::fs::write(&path, kubeconfig).unwrap();
        let config = load_config(&path).await;
        std::fs::remove_file(&path).unwrap();
        config
    }

    #[tokio::test]
    async fn a_remote_kubeconfig_is_refused_before_any_request() {
        for server in [
            "https://10.1.2.3:6443",
            "https://localhost:6443",
            "https://[::1]:6443",
        ] {
            let err = load_with_server(server).await.unwrap_err();
            assert!(matches!(err, Error::NotLoopback { .. }), "{server}: {err}");
        }
    }

    #[tokio::test]
    async fn a_loopback_kubeconfig_is_accepted() {
        let config = load_with_server("https://127.0.0.1:6443").await.unwrap();
        assert_eq!(config.cluster_url.host(), Some("127.0.0.1"));
    }
}
