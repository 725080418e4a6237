//! podid's `mic` binary as a process, as it is deployed: azure.json (`--cloudconfig`), the
//! go-autorest environment file naming the emulator, the emulator's CA, `MIC_POD_NAMESPACE`,
//! and a kubeconfig that acts as MIC's ServiceAccount (impersonation), so the binary has
//! exactly the RBAC it ships with. Every Azure endpoint is one of the emulator's loopback
//! listeners; IMDS is a closed loopback port unless a test names one.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Endpoints;
use kube::Client;
use kube::api::Api;
use podid_emulator::testing::TENANT;
use podid_testkit::{AzureSide, TestEnv, UpstreamMicOptions};
use serde_json::Value;
use tokio::process::{Child, Command};

use super::{Harness, MIC_CLIENT, MIC_SA, NODE_RG, PATIENCE};

/// The lock both MICs use (upstream's default name), in each test's own namespace.
const LOCK: &str = "aad-pod-identity-mic";
/// Short, so a takeover after a kill is quick; long enough that a loaded machine does not
/// make a healthy leader miss its renew deadline (half of it) and exit.
pub const LEASE: &str = "6s";

/// How to run the binary.
#[derive(Debug, Clone)]
pub struct MicOptions {
    /// Written to azure.json.
    pub azure_json: Value,
    /// `--leader-election-instance`.
    pub instance: String,
    /// `--leader-election-namespace`.
    pub lock_namespace: String,
    /// `--imds-endpoint`.
    pub imds_endpoint: String,
}

/// A running `mic`. Killed when dropped; its log is printed then if the test is failing.
pub struct MicProcess {
    child: Child,
    dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl Harness {
    /// Options for a `mic` that signs in as the world's MIC service principal and locks in
    /// this test's namespace.
    pub fn mic_options(&self, instance: &str) -> MicOptions {
        MicOptions {
            azure_json: self.azure_json(),
            instance: instance.to_owned(),
            lock_namespace: self.ns.name().to_owned(),
            // A closed loopback port: never the real IMDS.
            imds_endpoint: "http://127.0.0.1:9/".to_owned(),
        }
    }

    /// Options for upstream's MIC (`podid_testkit::UpstreamMic`) in the same world, with the
    /// same lock and lease as [`Harness::mic_options`]. It runs as cluster admin: it needs
    /// rules podid's MIC does not ship (ConfigMaps and CRDs for its type upgrade).
    pub async fn upstream_options(&self, instance: &str) -> UpstreamMicOptions {
        UpstreamMicOptions {
            kubeconfig: TestEnv::get().await.kubeconfig_path().to_owned(),
            azure: AzureSide {
                arm_base: self.emu.arm_base().to_owned(),
                entra_base: self.emu.entra_base().to_owned(),
                ca_file: self.emu.ca_file().to_owned(),
                tenant_id: TENANT.to_owned(),
                client_id: MIC_CLIENT.to_owned(),
                client_secret: "mic-secret".to_owned(),
                subscription_id: self.sub.clone(),
                resource_group: NODE_RG.to_owned(),
            },
            pod_namespace: self.ns.name().to_owned(),
            instance: instance.to_owned(),
            leader_election_namespace: self.ns.name().to_owned(),
            extra_args: vec![format!("--leader-election-duration={LEASE}")],
        }
    }

    /// Starts podid's `mic` binary.
    pub async fn start_mic_process(&self, options: &MicOptions) -> MicProcess {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let cloud_config = dir.path().join("azure.json");
        std::fs::write(&cloud_config, options.azure_json.to_string()).expect("azure.json");
        let kubeconfig = service_account_kubeconfig(dir.path()).await;
        let log = std::fs::File::create(dir.path().join("mic.log")).expect("the log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_mic"));
        command
            .arg(format!("--kubeconfig={}", kubeconfig.display()))
            .arg(format!("--cloudconfig={}", cloud_config.display()))
            // Port 0: the bound ports are read from the log (`health`).
            .args([
                "--http-probe-port=0",
                "--prometheus-port=0",
                "--log-format=json",
            ])
            .arg(format!("--leader-election-instance={}", options.instance))
            .arg(format!(
                "--leader-election-namespace={}",
                options.lock_namespace
            ))
            .arg(format!("--leader-election-duration={LEASE}"))
            .arg(format!("--imds-endpoint={}", options.imds_endpoint))
            .arg(format!("--azure-ca-file={}", self.emu.ca_file().display()))
            .args([
                "--removal-grace-period=0s",
                "--update-user-msi-retry-interval=100ms",
                "--cloudconfig-check-interval=200ms",
            ])
            .env("MIC_POD_NAMESPACE", self.ns.name())
            .env("AZURE_ENVIRONMENT_FILEPATH", self.environment_file())
            .env("SSL_CERT_FILE", self.emu.ca_file())
            .env("RUST_LOG", "info,podid_mic=debug,podid_leader=debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("the log file"))
            .stderr(log)
            .kill_on_drop(true);
        podid_testkit::without_proxies(&mut command);
        let child = command.spawn().expect("podid's mic starts");
        MicProcess {
            child,
            dir,
            http: reqwest::Client::builder()
                .no_proxy()
                .build()
                .expect("an HTTP client"),
        }
    }
}

impl MicProcess {
    /// What it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mic.log")).unwrap_or_default()
    }

    /// Rewrites its azure.json (MIC checks the file for changes).
    pub fn write_azure_json(&self, azure_json: &Value) {
        // Written whole under another name and renamed, so MIC never reads half a file.
        let next = self.dir.path().join("azure.json.next");
        std::fs::write(&next, azure_json.to_string()).expect("azure.json");
        std::fs::rename(&next, self.dir.path().join("azure.json")).expect("azure.json");
    }

    /// `/healthz`'s body, or why there is none.
    pub async fn health(&self) -> Result<String, String> {
        let probe = podid_testkit::logged_listener(&self.log(), "probe")
            .ok_or("the probe is not listening yet")?;
        let reply = self
            .http
            .get(format!("http://127.0.0.1:{}/healthz", probe.port()))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        reply.text().await.map_err(|e| e.to_string())
    }

    /// Waits until it runs the cycle (`/healthz` answers `Active`); fails if it exits.
    pub async fn wait_active(&mut self) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.exited() {
                panic!("podid's mic exited ({status}):\n{}", self.log());
            }
            match self.health().await {
                Ok(body) if body == "Active" => return,
                seen if tokio::time::Instant::now() > deadline => {
                    panic!("podid's mic never led: /healthz {seen:?}")
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Sends SIGTERM (what the kubelet sends) and waits for the exit.
    pub async fn terminate(&mut self) -> ExitStatus {
        let pid = self.child.id().expect("mic still runs").to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill runs");
        assert!(sent.success(), "kill -TERM {pid} failed");
        tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .expect("mic exits after SIGTERM")
            .expect("mic's exit status")
    }

    /// Whether it has exited, and how.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for MicProcess {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        if std::thread::panicking() {
            eprintln!("--- podid's mic log ---\n{}", self.log());
        }
    }
}

/// The holders of both locks in `namespace`: the Lease's and the Endpoints annotation's
/// (`None` when the lock does not exist; an empty string once released).
pub async fn lock_holders(client: &Client, namespace: &str) -> (Option<String>, Option<String>) {
    let lease = Api::<Lease>::namespaced(client.clone(), namespace)
        .get_opt(LOCK)
        .await
        .expect("the API server answers")
        .map(|lease| {
            lease
                .spec
                .and_then(|spec| spec.holder_identity)
                .unwrap_or_default()
        });
    let endpoints = Api::<Endpoints>::namespaced(client.clone(), namespace)
        .get_opt(LOCK)
        .await
        .expect("the API server answers")
        .and_then(|endpoints| {
            let annotation = endpoints
                .metadata
                .annotations?
                .remove(podid_leader::LEADER_ANNOTATION)?;
            podid_leader::LeaderRecord::from_annotation(&annotation)
                .ok()
                .map(|record| record.holder_identity)
        });
    (lease, endpoints)
}

/// The test plane's kubeconfig, acting as MIC's ServiceAccount.
async fn service_account_kubeconfig(dir: &Path) -> PathBuf {
    let admin = TestEnv::get().await.kubeconfig_path();
    let mut config = kube::config::Kubeconfig::read_from(admin).expect("the test kubeconfig");
    for user in &mut config.auth_infos {
        if let Some(auth) = user.auth_info.as_mut() {
            auth.impersonate = Some(format!("system:serviceaccount:default:{MIC_SA}"));
        }
    }
    let path = dir.join("kubeconfig");
    // JSON is YAML, which every kubeconfig reader takes.
    std::fs::write(&path, serde_json::to_string(&config).expect("a kubeconfig"))
        .expect("the kubeconfig");
    path
}
