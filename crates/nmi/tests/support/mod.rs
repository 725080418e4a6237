//! NMI in-process against the test control plane and the Azure emulator: pods are API
//! objects whose IP is a unique loopback address, and each pod's HTTP client binds its source
//! address to that IP, so NMI identifies it as on a node, without root.
//!
//! Every NMI here calls the emulator's IMDS of one machine and the emulator's Entra ID: nothing
//! leaves 127.0.0.0/8. NMI acts as its ServiceAccount, with exactly the roles the install
//! manifest of its mode binds to it.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use podid_api::{
    AssignedIdentityState, AzureAssignedIdentity, AzureAssignedIdentitySpec,
    AzureAssignedIdentityStatus, AzureIdentity, AzureIdentityBinding, AzureIdentityBindingSpec,
    AzureIdentitySpec,
};
use podid_azure::http::HttpOptions;
use podid_emulator::testing::{Emulator, NODE_RG, OTHER_TENANT, TENANT, uami_id};
use podid_nmi::RouteOptions;
use podid_nmi::selection::RetryPolicy;
use podid_nmi::server::{App, Listeners, Settings};
use podid_nmi::state::Mode;
use podid_nmi::tokens::Clock;
use podid_testkit::{
    ShippedRbac, TestEnv, TestNamespace, create_pod, pod_on_node, unique_name, wait_for,
};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use url::Url;

pub const MACHINE: &str = "node-vm";
pub const ALPHA_CLIENT: &str = "aaaaaaaa-1111-4111-8111-111111111111";
pub const BETA_CLIENT: &str = "bbbbbbbb-2222-4222-8222-222222222222";
pub const GAMMA_CLIENT: &str = "cccccccc-3333-4333-8333-333333333333";
/// The seed world's service principal and its test-only credentials (crates/azure/tests).
pub const SP_CLIENT: &str = "1c2d3e4f-5a6b-4c7d-8e9f-a0b1c2d3e4f5";
pub const SP_SECRET: &str = "seed-sp-secret.emulator-only~0123456789";
pub const P12: &[u8] = include_bytes!("../../../azure/tests/fixtures/seed-sp.p12");
pub const P12_PASSWORD: &str = "podid-test";
pub const VAULT: &str = "https://vault.azure.net";
/// How long a test waits for NMI before failing; a bound for a broken test, not a timing.
pub const WAIT: Duration = Duration::from_secs(30);
/// The install manifests whose NMI RBAC the tests run with, by mode.
pub const STANDARD_MANIFEST: &str = include_str!("../../../../deploy/infra/deployment-rbac.yaml");
pub const MANAGED_MANIFEST: &str =
    include_str!("../../../../deploy/infra/managed-mode-deployment.yaml");
pub const NMI_SA: &str = "aad-pod-id-nmi-service-account";

/// A client acting as NMI's ServiceAccount, bound to the roles the manifest of `mode` ships. Both
/// manifests name their ClusterRole alike, so the copies get a suffix per mode: tests of both
/// modes run side by side.
async fn nmi_client(env: &TestEnv, mode: Mode) -> Client {
    let (manifest, suffix) = match mode {
        Mode::Standard => (STANDARD_MANIFEST, "-standard"),
        Mode::Managed => (MANAGED_MANIFEST, "-managed"),
    };
    let rbac = ShippedRbac::from_manifest(manifest, NMI_SA)
        .expect("NMI's shipped RBAC")
        .with_suffix(suffix);
    rbac.apply(&env.admin(), &[])
        .await
        .expect("NMI's RBAC applies");
    env.as_service_account(rbac.namespace(), rbac.name())
}

pub fn alpha_id() -> String {
    uami_id(NODE_RG, "alpha")
}

/// A VM with alpha and beta (and a system-assigned identity), gamma elsewhere, and the seed
/// service principal with its secret and certificate, in two tenants.
pub fn world() -> String {
    let seed = podid_emulator::testing::SEED_WORLD;
    let certificate = seed
        .split("certificates:\n")
        .nth(1)
        .and_then(|rest| rest.split("\n\n").next())
        .expect("the seed world's certificate");
    format!(
        r#"
tenantId: {TENANT}
extraTenantIds: [{OTHER_TENANT}]
subscriptions:
  - id: {sub}
    resourceGroups:
      - {{ name: {NODE_RG}, location: eastus }}
userAssignedIdentities:
  - {{ resourceGroup: {NODE_RG}, name: alpha, clientId: {ALPHA_CLIENT} }}
  - {{ resourceGroup: {NODE_RG}, name: beta, clientId: {BETA_CLIENT} }}
  - {{ resourceGroup: {NODE_RG}, name: gamma, clientId: {GAMMA_CLIENT} }}
virtualMachines:
  - {{ resourceGroup: {NODE_RG}, name: {MACHINE}, identity: {{ systemAssigned: true, userAssigned: [alpha, beta] }} }}
servicePrincipals:
  - clientId: {SP_CLIENT}
    displayName: podid-seed-sp
    secrets: ["{SP_SECRET}"]
    certificates:
{certificate}
knobs:
  imds: {{ requestsPerSecond: 0, maxConcurrent: 0 }}
"#,
        sub = podid_emulator::testing::SUBSCRIPTION,
    )
}

/// A clock tests move by hand (it starts at the real time, as the emulator's does).
pub struct ManualClock(AtomicU64);

impl ManualClock {
    pub fn new() -> Arc<Self> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        Arc::new(Self(AtomicU64::new(now)))
    }

    pub fn advance(&self, seconds: u64) {
        self.0.fetch_add(seconds, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.0.load(Ordering::SeqCst))
    }
}

/// Settings for a test NMI: this test's node, the emulator for Azure, upstream's defaults
/// otherwise.
pub fn settings(emu: &Emulator, node: &str) -> Settings {
    let http = HttpOptions {
        use_environment_proxy: false,
        ..HttpOptions::default()
    }
    .trusting_ca_file(emu.ca_file())
    .expect("the emulator's CA");
    Settings {
        node: node.to_owned(),
        mode: Mode::Standard,
        force_namespaced: false,
        mic_namespace: "default".to_owned(),
        route: RouteOptions::default(),
        retry: RetryPolicy::default(),
        set_retry_after_header: false,
        imds_endpoint: Url::parse(emu.imds_base(MACHINE)).unwrap(),
        default_authority: authority(emu),
        http,
    }
}

pub fn authority(emu: &Emulator) -> Url {
    Url::parse(&format!("{}/", emu.entra_base())).unwrap()
}

/// One NMI, its emulator, a namespace and a node of its own.
pub struct Nmi {
    pub emu: Emulator,
    pub env: &'static TestEnv,
    pub ns: TestNamespace,
    pub node: String,
    pub app: Arc<App>,
    pub clock: Arc<ManualClock>,
    pub metadata: SocketAddr,
    pub host: SocketAddr,
    pub probe: SocketAddr,
    pub metrics: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<()>>,
}

async fn loopback() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.unwrap()
}

impl Nmi {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts NMI with settings changed by `change`, and waits for its watches to list.
    pub async fn start_with(change: impl FnOnce(&mut Settings)) -> Self {
        Self::start_in(|settings, _| change(settings)).await
    }

    /// [`Nmi::start_with`], where `change` also gets the test's namespace.
    pub async fn start_in(change: impl FnOnce(&mut Settings, &str)) -> Self {
        let nmi = Self::start_as(None, change).await;
        tokio::time::timeout(WAIT, nmi.app.state().wait_synced())
            .await
            .expect("NMI's watches list within 30 s");
        nmi
    }

    /// Starts NMI acting as `client` (`None`: NMI's ServiceAccount with the roles its mode's
    /// manifest ships) without waiting for its watches.
    pub async fn start_as(
        client: Option<Client>,
        change: impl FnOnce(&mut Settings, &str),
    ) -> Self {
        let emu = Emulator::start(&world()).await;
        let env = TestEnv::get().await;
        let ns = env.namespace("nmi").await;
        let node = unique_name("node");
        let mut settings = settings(&emu, &node);
        change(&mut settings, ns.name());
        let nmi = match client {
            Some(client) => client,
            None => nmi_client(env, settings.mode).await,
        };
        let clock = ManualClock::new();
        let app = App::new(settings, nmi.clone(), clock.clone()).unwrap();
        app.mark_active();
        let listeners = Listeners {
            metadata: loopback().await,
            host: loopback().await,
            probe: loopback().await,
            metrics: loopback().await,
        };
        let address = |l: &TcpListener| l.local_addr().unwrap();
        let (metadata, host, probe, metrics) = (
            address(&listeners.metadata),
            address(&listeners.host),
            address(&listeners.probe),
            address(&listeners.metrics),
        );
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let served = tokio::spawn(app.clone().serve(nmi, listeners, async move {
            let _ = stopped.await;
        }));
        let served = tokio::spawn(async move {
            served.await.expect("NMI serves until stopped");
        });
        Self {
            emu,
            env,
            ns,
            node,
            app,
            clock,
            metadata,
            host,
            probe,
            metrics,
            stop: Some(stop),
            served: Some(served),
        }
    }

    pub fn client(&self) -> Client {
        self.env.admin()
    }

    pub fn ns(&self) -> &str {
        self.ns.name()
    }

    /// A running pod on this NMI's node with a fresh loopback IP; waits until NMI knows it.
    pub async fn pod(&self, name: &str, labels: &[(&str, &str)]) -> TestPod {
        self.pod_with(name, labels, "Running", |_| {}).await
    }

    pub async fn pod_with(
        &self,
        name: &str,
        labels: &[(&str, &str)],
        phase: &str,
        change: impl FnOnce(&mut Pod),
    ) -> TestPod {
        let mut pod = pod_on_node(name, labels, &self.node);
        change(&mut pod);
        create_pod(&self.client(), self.ns(), &pod).await.unwrap();
        let ip = fresh_ip();
        let status = json!({"status": {"phase": phase, "podIP": ip.to_string(),
                                        "podIPs": [{"ip": ip.to_string()}], "hostIP": "127.0.0.1"}});
        Api::<Pod>::namespaced(self.client(), self.ns())
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .unwrap();
        let state = self.app.state().clone();
        let (ns, pod_name) = (self.ns().to_owned(), name.to_owned());
        wait_for("NMI sees the pod's IP", WAIT, || {
            let state = state.clone();
            let (ns, pod_name) = (ns.clone(), pod_name.clone());
            async move {
                state
                    .pod_by_name(&ns, &pod_name)
                    .ok()
                    .filter(|p| p.ips.contains(&IpAddr::V4(ip)))
            }
        })
        .await;
        TestPod {
            name: name.to_owned(),
            namespace: self.ns().to_owned(),
            ip,
            metadata: self.metadata,
        }
    }

    /// An AzureIdentity of type 0 for a world identity, in this test's namespace (not created).
    pub fn identity(
        &self,
        name: &str,
        client_id: &str,
        resource_id: Option<String>,
    ) -> AzureIdentity {
        let mut identity = AzureIdentity::new(
            name,
            AzureIdentitySpec {
                client_id: Some(client_id.to_owned()),
                resource_id,
                ..AzureIdentitySpec::default()
            },
        );
        identity.metadata.namespace = Some(self.ns().to_owned());
        identity
    }

    /// A running pod labelled `aadpodidbinding: <name>` whose `identity` is already
    /// `Assigned`; returns the pod and the AzureAssignedIdentity's name.
    pub async fn assigned_pod(&self, name: &str, identity: &AzureIdentity) -> (TestPod, String) {
        let pod = self.pod(name, &[("aadpodidbinding", name)]).await;
        let assigned = self
            .assign(&pod, identity, Some(AssignedIdentityState::Assigned))
            .await;
        (pod, assigned)
    }

    /// Writes an AzureAssignedIdentity as upstream's MIC does (name `<pod>-<ns>-<identity>`,
    /// label `nodename`, the identity and the binding embedded) with `state`, and waits until
    /// NMI has it. The binding (selector: the pod's `aadpodidbinding` label) is created first
    /// when the pod has that label, as it exists whenever MIC assigns.
    pub async fn assign(
        &self,
        pod: &TestPod,
        identity: &AzureIdentity,
        state: Option<AssignedIdentityState>,
    ) -> String {
        let identity_name = identity.metadata.name.clone().unwrap();
        let name =
            podid_api::names::assigned_identity_name(&pod.name, &pod.namespace, &identity_name);
        let binding = self.binding_for(pod, &identity_name).await;
        let mut aai = AzureAssignedIdentity::new(
            &name,
            AzureAssignedIdentitySpec {
                azure_identity_ref: Some(identity.clone()),
                azure_binding_ref: binding,
                pod: Some(pod.name.clone()),
                pod_namespace: Some(pod.namespace.clone()),
                node_name: Some(self.node.clone()),
                ..AzureAssignedIdentitySpec::default()
            },
        );
        aai.metadata.labels = Some([("nodename".to_owned(), self.node.clone())].into());
        let api = Api::<AzureAssignedIdentity>::namespaced(self.client(), self.ns());
        api.create(&PostParams::default(), &aai).await.unwrap();
        if let Some(state) = state {
            self.set_state(&name, state).await;
        } else {
            self.wait_assigned_count(pod, |n| n > 0).await;
        }
        name
    }

    /// The binding of `identity_name` selecting the pod's `aadpodidbinding` label in this
    /// test's namespace: the test's own if it made one, else created (NMI has seen it on
    /// return); `None` for an unlabelled or absent pod, as MIC records no binding for those.
    async fn binding_for(
        &self,
        pod: &TestPod,
        identity_name: &str,
    ) -> Option<AzureIdentityBinding> {
        let pods = Api::<Pod>::namespaced(self.client(), &pod.namespace);
        let labels = pods.get_opt(&pod.name).await.unwrap()?.metadata.labels?;
        let label = labels.get(podid_api::names::POD_LABEL_KEY)?.clone();
        let api = Api::<AzureIdentityBinding>::namespaced(self.client(), self.ns());
        let existing = api.list(&Default::default()).await.unwrap().items;
        let binding = match existing.into_iter().find(|b| {
            b.spec.azure_identity.as_deref() == Some(identity_name)
                && b.spec.selector.as_deref() == Some(label.as_str())
        }) {
            Some(binding) => binding,
            None => {
                let mut binding = AzureIdentityBinding::new(
                    &format!("{identity_name}-{}", label.to_lowercase()),
                    AzureIdentityBindingSpec {
                        azure_identity: Some(identity_name.to_owned()),
                        selector: Some(label.clone()),
                        ..AzureIdentityBindingSpec::default()
                    },
                );
                binding.metadata.namespace = Some(self.ns().to_owned());
                api.create(&PostParams::default(), &binding).await.unwrap()
            }
        };
        let app = self.app.clone();
        let key = (self.ns().to_owned(), binding.metadata.name.clone().unwrap());
        wait_for("NMI sees the binding", WAIT, || {
            let (app, key, label) = (app.clone(), key.clone(), label.clone());
            async move {
                app.state()
                    .bindings_selecting(&label)
                    .contains(&key)
                    .then_some(())
            }
        })
        .await;
        Some(binding)
    }

    /// Sets `status.status` of an AzureAssignedIdentity and waits until NMI sees it.
    pub async fn set_state(&self, name: &str, state: AssignedIdentityState) {
        let api = Api::<AzureAssignedIdentity>::namespaced(self.client(), self.ns());
        let status = AzureAssignedIdentityStatus {
            status: Some(state.clone()),
            available_replicas: Some(1),
        };
        // Upstream's CRD has no status subresource: the status is part of the object.
        api.patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": status})),
        )
        .await
        .unwrap();
        let app = self.app.clone();
        let ns = self.ns().to_owned();
        let name = name.to_owned();
        wait_for("NMI sees the assignment's state", WAIT, || {
            let (app, ns, name, state) = (app.clone(), ns.clone(), name.clone(), state.clone());
            async move {
                let aai = api_get(&app, &ns, &name);
                aai.filter(|aai| {
                    aai.status.as_ref().and_then(|s| s.status.as_ref()) == Some(&state)
                })
            }
        })
        .await;
    }

    pub async fn wait_assigned_count(&self, pod: &TestPod, check: impl Fn(usize) -> bool) {
        let app = self.app.clone();
        let (ns, name) = (pod.namespace.clone(), pod.name.clone());
        let check = &check;
        wait_for("NMI's assignments for the pod", WAIT, || {
            let app = app.clone();
            let (ns, name) = (ns.clone(), name.clone());
            async move {
                let n = app.state().assigned_to(&ns, &name).len();
                check(n).then_some(())
            }
        })
        .await;
    }

    /// The metrics text.
    pub async fn metrics_text(&self) -> String {
        plain_client()
            .get(format!("http://{}/metrics", self.metrics))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub async fn imds_token_calls(&self) -> u64 {
        self.emu.counter("imds.token", 200).await.1
    }

    /// Stops NMI (graceful) and the emulator.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(served) = self.served.take() {
            served.await.unwrap();
        }
        self.emu.shutdown().await;
    }
}

fn api_get(app: &App, ns: &str, name: &str) -> Option<AzureAssignedIdentity> {
    // Assignments are indexed by pod; this looks through the pod named in the AAI's name.
    let pod = name.split(&format!("-{ns}-")).next()?;
    app.state()
        .assigned_to(ns, pod)
        .into_iter()
        .find(|aai| aai.metadata.name.as_deref() == Some(name))
}

/// A unique 127.x.y.z address (not 127.0.0.1, which NMI never serves as a pod).
pub fn fresh_ip() -> Ipv4Addr {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::SeqCst) as u32;
    let base = (std::process::id() & 0x3f) << 16;
    let value = (base + n + 2) & 0x00ff_ffff;
    let [_, a, b, c] = value.to_be_bytes();
    Ipv4Addr::new(127, a.max(1), b, c.max(2))
}

pub fn plain_client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// A pod as a client: its HTTP requests leave from its IP.
pub struct TestPod {
    pub name: String,
    pub namespace: String,
    pub ip: Ipv4Addr,
    pub metadata: SocketAddr,
}

/// An answer read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub retry_after: Option<String>,
    pub location: Option<String>,
    pub text: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }

    pub fn error(&self) -> String {
        self.json()["error"].as_str().unwrap_or_default().to_owned()
    }

    pub fn access_token(&self) -> String {
        self.json()["access_token"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    pub fn client_id(&self) -> String {
        self.json()["client_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

pub async fn read(response: reqwest::Response) -> Answer {
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (retry_after, location) = (header("retry-after"), header("location"));
    Answer {
        status: response.status().as_u16(),
        retry_after,
        location,
        text: response.text().await.unwrap(),
    }
}

impl TestPod {
    pub fn http(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .local_address(IpAddr::V4(self.ip))
            .build()
            .unwrap()
    }

    /// `GET <path_and_query>` on NMI's pods' port with `headers`.
    pub async fn get(&self, path_and_query: &str, headers: &[(&str, &str)]) -> Answer {
        let mut request = self
            .http()
            .get(format!("http://{}{path_and_query}", self.metadata));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        read(request.send().await.expect("NMI answers")).await
    }

    /// A token request with `Metadata: true` for `resource` and `extra` query text.
    pub async fn token(&self, resource: &str, extra: &str) -> Answer {
        let resource =
            url::form_urlencoded::byte_serialize(resource.as_bytes()).collect::<String>();
        self.get(
            &format!(
                "/metadata/identity/oauth2/token?api-version=2018-02-01&resource={resource}{extra}"
            ),
            &[("Metadata", "true")],
        )
        .await
    }
}

/// The ReplicaSet owner reference a Deployment's pod has.
pub fn owned_by_replica_set(pod: &mut Pod, name: &str) {
    pod.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "apps/v1".into(),
        kind: "ReplicaSet".into(),
        name: name.into(),
        uid: "00000000-0000-4000-8000-000000000001".into(),
        ..OwnerReference::default()
    }]);
}

impl TestPod {
    /// A copy to move into a task.
    pub fn clone_for_task(&self) -> TestPod {
        TestPod {
            name: self.name.clone(),
            namespace: self.namespace.clone(),
            ip: self.ip,
            metadata: self.metadata,
        }
    }
}

/// E26's retry flags (1 look for Created, 1 for Assigned), with a short interval: a request
/// that cannot be served fails at once instead of after upstream's 80 s.
pub fn short_wait(settings: &mut Settings) {
    settings.retry.created_attempts = 1;
    settings.retry.assigned_attempts = 1;
    settings.retry.interval = Duration::from_millis(20);
}

impl TestPod {
    /// A raw TCP connection to NMI's pods' port from the pod's IP.
    pub async fn connect(&self) -> tokio::net::TcpStream {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket
            .bind(SocketAddr::new(IpAddr::V4(self.ip), 0))
            .unwrap();
        socket.connect(self.metadata).await.unwrap()
    }
}
