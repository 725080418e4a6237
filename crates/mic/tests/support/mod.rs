//! The MIC test harness: the real API server (podid-testkit), the Azure emulator in-process,
//! and MIC running as its ServiceAccount with exactly the roles the install manifest binds to it
//! (deploy/infra/deployment-rbac.yaml; the leader-election Role also in each test's namespace,
//! where the tests put the lock).
//!
//! Every test gets its own emulator whose subscription ID is fresh, and nodes named after the
//! test, so objects another test left behind never name one of its machines. Tests in one
//! binary run one at a time (they share the cluster-wide `default` namespace of
//! AzureAssignedIdentities and one controller's view of every pod).
#![allow(dead_code)]

pub mod process;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use podid_api::names::{ASSIGNED_IDENTITY_FINALIZER, POD_LABEL_KEY};
use podid_api::{
    AzureAssignedIdentity, AzureIdentity, AzureIdentityBinding, AzureIdentityBindingSpec,
    AzureIdentitySpec, IdentityType,
};
use podid_azure::arm::PollOptions;
use podid_azure::http::HttpOptions;
use podid_emulator::testing::{Emulator, Surface, TENANT};
use podid_mic::azure::AzureSource;
use podid_mic::controller::{Azure, Backoff, Controller, Debounce, Settings, Stopped, Timing};
use podid_mic::metrics::Metrics;
use podid_testkit::{ShippedRbac, TestEnv, TestNamespace, wait_for};
use serde_json::{Value, json};
use tokio::sync::{Mutex, MutexGuard, watch};
use tokio::task::JoinHandle;

/// The install manifest whose MIC RBAC the tests run with.
pub const MIC_MANIFEST: &str = include_str!("../../../../deploy/infra/deployment-rbac.yaml");
pub const MIC_SA: &str = "aad-pod-id-mic-service-account";
pub const NODE_RG: &str = "node-rg";
pub const SHARED_RG: &str = "shared-ids";
pub const POOL: &str = "pool";
pub const POOL2: &str = "pool2";
pub const VM: &str = "vm-0";
pub const MIC_CLIENT: &str = "11111111-1111-4111-8111-111111111111";
pub const OWNER_CLIENT: &str = "33333333-3333-4333-8333-333333333333";
pub const KUBELET_CLIENT: &str = "5d0e8f3a-7c21-4b9e-a6d4-1f2e3c4b5a69";
/// How long a test waits for MIC before failing; a bound for a broken test, not a timing.
pub const PATIENCE: Duration = Duration::from_secs(60);

static SERIAL: Mutex<()> = Mutex::const_new(());

/// One test's world.
pub struct Harness {
    pub emu: Emulator,
    pub sub: String,
    pub ns: TestNamespace,
    pub admin: Client,
    /// Makes node names unique to the test.
    pub prefix: String,
    dir: tempfile::TempDir,
    mic: Option<RunningMic>,
    _serial: MutexGuard<'static, ()>,
}

pub struct RunningMic {
    pub leading: watch::Sender<bool>,
    pub active: Arc<AtomicBool>,
    pub metrics: Metrics,
    task: JoinHandle<Stopped>,
}

/// Client IDs of the world's identities.
pub fn client_id(name: &str) -> String {
    let n = name
        .bytes()
        .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64));
    format!(
        "{:08x}-0000-4000-8000-{:012x}",
        n as u32,
        n & 0xffff_ffff_ffff
    )
}

fn world(sub: &str, node_vm: &str) -> String {
    let identities: String = ["id-a", "id-b", "id-c", "id-d"]
        .iter()
        .map(|name| {
            format!(
                "  - {{ resourceGroup: {NODE_RG}, name: {name}, clientId: {} }}\n",
                client_id(name)
            )
        })
        .collect();
    format!(
        r#"
tenantId: {TENANT}
subscriptions:
  - id: {sub}
    resourceGroups:
      - {{ name: {NODE_RG}, location: eastus }}
      - {{ name: {SHARED_RG}, location: eastus }}
userAssignedIdentities:
{identities}  - {{ resourceGroup: {NODE_RG}, name: kubelet, clientId: {KUBELET_CLIENT} }}
  - {{ resourceGroup: {SHARED_RG}, name: ext-1, clientId: {ext} }}
virtualMachineScaleSets:
  - resourceGroup: {NODE_RG}
    name: {POOL}
    identity: {{ userAssigned: [kubelet] }}
    instances: [{{ instanceId: "0" }}, {{ instanceId: "1" }}]
  - resourceGroup: {NODE_RG}
    name: {POOL2}
    instances: [{{ instanceId: "0" }}]
virtualMachines:
  - {{ resourceGroup: {NODE_RG}, name: {VM}, identity: {{ systemAssigned: true }} }}
  - {{ resourceGroup: {NODE_RG}, name: {node_vm} }}
servicePrincipals:
  - {{ clientId: {MIC_CLIENT}, displayName: mic, secrets: [mic-secret] }}
  - {{ clientId: {OWNER_CLIENT}, displayName: owner, secrets: [owner-secret] }}
roleAssignments:
  - {{ principal: mic, role: Virtual Machine Contributor, scope: /subscriptions/{sub}/resourceGroups/{NODE_RG} }}
  - {{ principal: mic, role: Managed Identity Operator, scope: /subscriptions/{sub}/resourceGroups/{NODE_RG} }}
  - {{ principal: owner, role: Owner, scope: /subscriptions/{sub} }}
"#,
        ext = client_id("ext-1"),
    )
}

/// Settings that keep tests quick: short debounce and backoffs, no grace, no periodic
/// refresh unless a test asks.
pub fn test_settings() -> Settings {
    Settings {
        debounce: Debounce {
            quiet: Duration::from_millis(20),
            burst_quiet: Duration::from_millis(100),
            max: Duration::from_secs(1),
        },
        removal_grace: Duration::ZERO,
        timing: Timing {
            retry: Backoff {
                base: Duration::from_millis(100),
                max: Duration::from_millis(500),
            },
            quarantine: Backoff {
                base: Duration::from_millis(300),
                max: Duration::from_secs(1),
            },
            refresh: Duration::from_secs(3600),
            update_recheck: Duration::from_millis(300),
            update_hold: Duration::from_secs(60),
        },
        event_window: Duration::from_secs(3600),
        ..Settings::default()
    }
}

impl Harness {
    pub async fn new(prefix: &str) -> Self {
        let serial = SERIAL.lock().await;
        let env = TestEnv::get().await;
        let admin = env.admin();
        let ns = env.namespace(prefix).await;
        let rbac = ShippedRbac::from_manifest(MIC_MANIFEST, MIC_SA).expect("MIC's shipped RBAC");
        assert_eq!(rbac.namespace(), "default", "MIC's ServiceAccount moved");
        rbac.apply(&admin, &[ns.name()])
            .await
            .expect("MIC's RBAC applies");
        let sub = uuid_like();
        let unique = podid_testkit::unique_name(prefix);
        let emu = Emulator::start(&world(&sub, &node_vm_name(&unique))).await;
        emu.set_knobs(json!({"arm": {"lroMode": "sync"}})).await;
        Self {
            emu,
            sub,
            prefix: unique,
            ns,
            admin,
            dir: tempfile::tempdir().expect("a temporary directory"),
            mic: None,
            _serial: serial,
        }
    }

    /// azure.json naming the world's MIC service principal (custom cloud: see
    /// [`Harness::environment_file`]).
    pub fn azure_json(&self) -> Value {
        json!({
            "cloud": "AzureStackCloud",
            "tenantId": TENANT,
            "aadClientId": MIC_CLIENT,
            "aadClientSecret": "mic-secret",
            "subscriptionId": self.sub,
            "resourceGroup": NODE_RG,
            "vmType": "vmss",
            "userAssignedIdentityID": KUBELET_CLIENT,
        })
    }

    /// Writes the go-autorest environment file (`AZURE_ENVIRONMENT_FILEPATH`) naming the
    /// emulator's ARM and Entra ID, and returns its path.
    pub fn environment_file(&self) -> std::path::PathBuf {
        let environment = self.dir.path().join("cloud.json");
        std::fs::write(
            &environment,
            json!({
                "name": "AzureStackCloud",
                "resourceManagerEndpoint": format!("{}/", self.emu.arm_base()),
                "activeDirectoryEndpoint": format!("{}/", self.emu.entra_base()),
            })
            .to_string(),
        )
        .expect("the environment file");
        environment
    }

    /// The azure.json and environment file pointing MIC at the emulator.
    pub fn azure_source(&self) -> AzureSource {
        let azure_json = self.dir.path().join("azure.json");
        let environment = self.environment_file();
        std::fs::write(&azure_json, self.azure_json().to_string()).expect("azure.json");
        let environment = environment.to_string_lossy().into_owned();
        AzureSource {
            cloud_config: Some(azure_json),
            http: HttpOptions {
                use_environment_proxy: false,
                ..HttpOptions::default()
            }
            .trusting_ca_file(self.emu.ca_file())
            .expect("the emulator's CA"),
            // Never the real IMDS: nothing here uses it, and nothing may leave loopback.
            imds_endpoint: url::Url::parse("http://127.0.0.1:9/").expect("a URL"),
            poll: PollOptions {
                default_delay: Duration::from_millis(50),
                max_delay: Duration::from_millis(200),
                timeout: Duration::from_secs(60),
            },
            environment: Arc::new(move |name| {
                (name == "AZURE_ENVIRONMENT_FILEPATH").then(|| environment.clone())
            }),
        }
    }

    /// MIC's controller acting as `client` against this harness's emulator, and the sender of
    /// its Azure configuration, which must live as long as it runs.
    pub fn controller(
        &self,
        client: Client,
        settings: Settings,
        metrics: Metrics,
    ) -> (Controller, watch::Sender<Option<Azure>>) {
        let azure = self.azure_source().load().expect("the Azure config loads");
        let (azure_tx, azure_rx) = watch::channel(Some(azure));
        (
            Controller::new(client, azure_rx, settings, metrics),
            azure_tx,
        )
    }

    /// Starts MIC (leading at once) with `settings`.
    pub async fn start_mic(&mut self, settings: Settings) {
        let client = TestEnv::get().await.as_service_account("default", MIC_SA);
        let metrics = Metrics::new();
        let (controller, _azure_tx) = self.controller(client, settings, metrics.clone());
        let active = controller.active();
        let (leading, leading_rx) = watch::channel(true);
        let task = tokio::spawn(async move {
            // The sender lives as long as MIC runs.
            let _azure_tx = _azure_tx;
            controller.run(leading_rx, std::future::pending()).await
        });
        self.mic = Some(RunningMic {
            leading,
            active,
            metrics,
            task,
        });
    }

    pub fn mic(&self) -> &RunningMic {
        self.mic.as_ref().expect("MIC runs")
    }

    /// Takes leadership away; MIC must stop with `LostLeadership`.
    pub async fn stop_mic(&mut self) -> Stopped {
        let mic = self.mic.take().expect("MIC runs");
        mic.leading.send_replace(false);
        tokio::time::timeout(PATIENCE, mic.task)
            .await
            .expect("MIC stops")
            .expect("MIC's task ends cleanly")
    }

    pub fn node_name(&self, machine: &str) -> String {
        format!("{}-{machine}", self.prefix)
    }

    /// A node on scale set instance `instance` of `scale_set`.
    pub async fn vmss_node(&self, scale_set: &str, instance: u32) -> String {
        let name = self.node_name(&format!("{scale_set}-{instance}"));
        let provider = format!(
            "azure:///subscriptions/{}/resourceGroups/{NODE_RG}/providers/Microsoft.Compute/virtualMachineScaleSets/{scale_set}/virtualMachines/{instance}",
            self.sub
        );
        self.node(&name, &provider).await;
        name
    }

    pub async fn vm_node(&self, vm: &str) -> String {
        let name = self.node_name(vm);
        let provider = format!(
            "azure:///subscriptions/{}/resourceGroups/{NODE_RG}/providers/Microsoft.Compute/virtualMachines/{vm}",
            self.sub
        );
        self.node(&name, &provider).await;
        name
    }

    /// The world's VM named like its node ([`node_vm_name`]): upstream's MIC takes the node
    /// name for the VM name.
    pub fn node_vm(&self) -> String {
        node_vm_name(&self.prefix)
    }

    /// The node of [`Harness::node_vm`], named like it.
    pub async fn node_vm_node(&self) -> String {
        let name = self.node_vm();
        let provider = format!(
            "azure:///subscriptions/{}/resourceGroups/{NODE_RG}/providers/Microsoft.Compute/virtualMachines/{name}",
            self.sub
        );
        self.node(&name, &provider).await;
        name
    }

    pub async fn node(&self, name: &str, provider_id: &str) {
        podid_testkit::create_node(
            &self.admin,
            &podid_testkit::node_with_provider_id(name, provider_id),
        )
        .await
        .expect("the node is created");
    }

    pub fn uami_id(&self, group: &str, name: &str) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{group}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}",
            self.sub
        )
    }

    /// A type-0 AzureIdentity `name` for the world's identity `uami` in `group`.
    pub async fn identity(&self, name: &str, group: &str, uami: &str) -> AzureIdentity {
        self.identity_with(
            name,
            AzureIdentitySpec {
                identity_type: Some(IdentityType::UserAssignedManagedIdentity),
                resource_id: Some(self.uami_id(group, uami)),
                client_id: Some(client_id(uami)),
                ..AzureIdentitySpec::default()
            },
        )
        .await
    }

    pub async fn identity_with(&self, name: &str, spec: AzureIdentitySpec) -> AzureIdentity {
        let api: Api<AzureIdentity> = Api::namespaced(self.admin.clone(), self.ns.name());
        api.create(&PostParams::default(), &AzureIdentity::new(name, spec))
            .await
            .expect("the identity is created")
    }

    /// Selectors match bindings of every namespace, so each test's are its own.
    pub fn selector(&self, selector: &str) -> String {
        format!("{}-{selector}", self.ns.name())
    }

    pub async fn binding(
        &self,
        name: &str,
        identity: &str,
        selector: &str,
    ) -> AzureIdentityBinding {
        let api: Api<AzureIdentityBinding> = Api::namespaced(self.admin.clone(), self.ns.name());
        let spec = AzureIdentityBindingSpec {
            azure_identity: Some(identity.into()),
            selector: Some(self.selector(selector)),
            weight: None,
        };
        api.create(
            &PostParams::default(),
            &AzureIdentityBinding::new(name, spec),
        )
        .await
        .expect("the binding is created")
    }

    pub async fn pod(&self, name: &str, selector: &str, node: &str) -> Pod {
        podid_testkit::create_pod(
            &self.admin,
            self.ns.name(),
            &podid_testkit::pod_on_node(name, &[(POD_LABEL_KEY, &self.selector(selector))], node),
        )
        .await
        .expect("the pod is created")
    }

    pub async fn delete_pod(&self, name: &str) {
        podid_testkit::delete_pod_now(&self.admin, self.ns.name(), name)
            .await
            .expect("the pod is deleted");
    }

    /// The name of the AzureAssignedIdentity of `pod` and `identity` (namespace `default`).
    pub fn aai_name(&self, pod: &str, identity: &str) -> String {
        format!("{pod}-{}-{identity}", self.ns.name())
    }

    pub async fn aai(&self, name: &str) -> Option<AzureAssignedIdentity> {
        let api: Api<AzureAssignedIdentity> = Api::namespaced(self.admin.clone(), "default");
        api.get_opt(name).await.expect("the API server answers")
    }

    pub fn status_of(aai: &AzureAssignedIdentity) -> String {
        aai.status
            .as_ref()
            .and_then(|s| s.status.as_ref())
            .map(|s| {
                serde_json::to_value(s)
                    .expect("a status")
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .unwrap_or_default()
    }

    /// Waits until the AzureAssignedIdentity `name` has status `status`.
    pub async fn wait_status(&self, name: &str, status: &str) -> AzureAssignedIdentity {
        wait_for(&format!("{name} to be {status}"), PATIENCE, || async {
            match self.aai(name).await {
                Some(aai) if Self::status_of(&aai) == status => Ok(aai),
                Some(aai) => Err(format!("status {:?}", Self::status_of(&aai))),
                None => Err("absent".to_owned()),
            }
        })
        .await
    }

    pub async fn wait_gone(&self, name: &str) {
        wait_for(&format!("{name} to be deleted"), PATIENCE, || async {
            match self.aai(name).await {
                None => Ok(()),
                Some(aai) => Err(format!("status {:?}", Self::status_of(&aai))),
            }
        })
        .await
    }

    /// Takes the identity `uami` (in the node resource group) off the scale set, as someone
    /// outside MIC would: through the emulator's admin API, so MIC's cached view goes stale.
    pub async fn remove_out_of_band(&self, scale_set: &str, uami: &str) {
        let removed = self
            .emu
            .admin(
                reqwest::Method::POST,
                "/admin/arm/remove-identity",
                Some(&json!({
                    "resource": format!("/subscriptions/{}/resourceGroups/{NODE_RG}/providers/Microsoft.Compute/virtualMachineScaleSets/{scale_set}", self.sub),
                    "identity": self.uami_id(NODE_RG, uami),
                })),
            )
            .await;
        assert!(removed.status.is_success(), "{:?}", removed.body);
        assert!(!self.identities_on(scale_set).await.contains(uami));
    }

    /// The user-assigned identity names on a machine (`"vm-0"`, `"pool"`), lowercased.
    pub async fn identities_on(&self, machine: &str) -> BTreeSet<String> {
        let world = self.emu.world().await;
        let machines = world["virtualMachines"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(
                world["virtualMachineScaleSets"]
                    .as_array()
                    .into_iter()
                    .flatten(),
            );
        for m in machines {
            if m["name"]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(machine))
            {
                return m["identity"]["userAssigned"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|i| i["id"].as_str())
                    .filter_map(|id| id.rsplit('/').next())
                    .map(str::to_ascii_lowercase)
                    .collect();
            }
        }
        panic!("no machine {machine} in the world: {world}");
    }

    pub async fn wait_identities(&self, machine: &str, expected: &[&str]) {
        let expected: BTreeSet<String> = expected.iter().map(|s| s.to_ascii_lowercase()).collect();
        wait_for(
            &format!("{machine} to hold {expected:?}"),
            PATIENCE,
            || async {
                let now = self.identities_on(machine).await;
                if now == expected {
                    Ok(())
                } else {
                    Err(format!("holds {now:?}"))
                }
            },
        )
        .await
    }

    /// PATCHes MIC sent to `machine` (journal), per status.
    pub async fn patches(&self, machine: &str) -> Vec<u64> {
        self.arm_calls("PATCH", machine).await
    }

    pub async fn gets(&self, machine: &str) -> Vec<u64> {
        self.arm_calls("GET", machine).await
    }

    async fn arm_calls(&self, method: &str, machine: &str) -> Vec<u64> {
        let suffix = format!("/{}", machine.to_ascii_lowercase());
        self.emu
            .journal(Some(Surface::Arm))
            .await
            .iter()
            .filter(|e| e["method"].as_str() == Some(method))
            .filter(|e| {
                e["path"]
                    .as_str()
                    .is_some_and(|p| p.to_ascii_lowercase().ends_with(&suffix))
            })
            .map(|e| e["status"].as_u64().unwrap_or_default())
            .collect()
    }

    /// Events whose involved object is `name`, as `(type, reason, message)`.
    pub async fn events_for(&self, namespace: &str, name: &str) -> Vec<(String, String, String)> {
        let api: Api<Event> = Api::namespaced(self.admin.clone(), namespace);
        api.list(&ListParams::default())
            .await
            .expect("events list")
            .items
            .into_iter()
            .filter(|e| e.involved_object.name.as_deref() == Some(name))
            .map(|e| {
                (
                    e.type_.unwrap_or_default(),
                    e.reason.unwrap_or_default(),
                    e.message.unwrap_or_default(),
                )
            })
            .collect()
    }

    pub async fn wait_event(
        &self,
        namespace: &str,
        name: &str,
        reason: &str,
        text: &str,
    ) -> String {
        wait_for(&format!("event {reason:?} on {name}"), PATIENCE, || async {
            let events = self.events_for(namespace, name).await;
            events
                .iter()
                .find(|(_, r, m)| r == reason && m.contains(text))
                .map(|(_, _, m)| m.clone())
                .ok_or(events)
        })
        .await
    }

    /// The invariant of every fault test: each `Assigned` AzureAssignedIdentity of this test
    /// has its identity on its machine (no identity still needed was removed).
    pub async fn check_invariant(&self, machine_of_node: impl Fn(&str) -> String) {
        let api: Api<AzureAssignedIdentity> = Api::namespaced(self.admin.clone(), "default");
        for aai in api
            .list(&ListParams::default())
            .await
            .expect("AAIs list")
            .items
        {
            if aai.spec.pod_namespace.as_deref() != Some(self.ns.name())
                || Self::status_of(&aai) != "Assigned"
            {
                continue;
            }
            let node = aai.spec.node_name.clone().unwrap_or_default();
            let id = aai
                .spec
                .azure_identity_ref
                .as_ref()
                .and_then(|i| i.spec.resource_id.clone())
                .unwrap_or_default();
            let name = id
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_ascii_lowercase();
            let machine = machine_of_node(&node);
            let on = self.identities_on(&machine).await;
            assert!(
                on.contains(&name),
                "{} is Assigned but {name} is not on {machine}: {on:?}",
                aai.name_any()
            );
        }
    }

    /// Stops MIC and removes what the test made cluster-wide.
    pub async fn finish(mut self) {
        if self.mic.is_some() {
            self.stop_mic().await;
        }
        let pods: Api<Pod> = Api::namespaced(self.admin.clone(), self.ns.name());
        for pod in pods.list(&ListParams::default()).await.expect("pods").items {
            self.delete_pod(&pod.name_any()).await;
        }
        let nodes: Api<Node> = Api::all(self.admin.clone());
        for node in nodes
            .list(&ListParams::default())
            .await
            .expect("nodes")
            .items
        {
            if node.name_any().starts_with(&self.prefix) {
                let _ = nodes
                    .delete(&node.name_any(), &DeleteParams::default())
                    .await;
            }
        }
        // Every namespace: namespaced identities' AAIs live in the test's.
        let all: Api<AzureAssignedIdentity> = Api::all(self.admin.clone());
        for aai in all.list(&ListParams::default()).await.expect("AAIs").items {
            if aai.spec.pod_namespace.as_deref() == Some(self.ns.name()) {
                let aais: Api<AzureAssignedIdentity> = Api::namespaced(
                    self.admin.clone(),
                    aai.namespace().as_deref().unwrap_or("default"),
                );
                let patch = json!({"metadata": {"finalizers": null}});
                let _ = aais
                    .patch(
                        &aai.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await;
                let _ = aais.delete(&aai.name_any(), &DeleteParams::default()).await;
            }
        }
        self.emu.shutdown().await;
    }
}

/// An AzureAssignedIdentity as upstream's MIC wrote it.
pub fn upstream_aai(
    name: &str,
    pod: &str,
    pod_namespace: &str,
    node: &str,
    identity: &AzureIdentity,
    binding: &AzureIdentityBinding,
    status: &str,
) -> Value {
    let embed = |kind: &str, object: Value| {
        let mut object = object;
        object["apiVersion"] = json!("aadpodidentity.k8s.io/v1");
        object["kind"] = json!(kind);
        object["metadata"]
            .as_object_mut()
            .expect("metadata")
            .remove("managedFields");
        object
    };
    json!({
        "apiVersion": "aadpodidentity.k8s.io/v1",
        "kind": "AzureAssignedIdentity",
        "metadata": {
            "name": name,
            "namespace": "default",
            "labels": {"nodename": node},
            "finalizers": [ASSIGNED_IDENTITY_FINALIZER],
        },
        "spec": {
            "azureIdentityRef": embed("AzureIdentity", serde_json::to_value(identity).expect("json")),
            "azureBindingRef": embed("AzureIdentityBinding", serde_json::to_value(binding).expect("json")),
            "pod": pod,
            "podNamespace": pod_namespace,
            "nodename": node,
        },
        "status": {"status": status, "availableReplicas": 1},
    })
}

/// The VM of a test whose node has the same name.
fn node_vm_name(prefix: &str) -> String {
    format!("{prefix}-vm")
}

/// A fresh subscription ID.
fn uuid_like() -> String {
    let name = podid_testkit::unique_name("s");
    let n = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    });
    let m = n.rotate_left(29) ^ std::process::id() as u64;
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        n as u32,
        (n >> 32) as u16,
        (m & 0xfff) as u16,
        ((m >> 12) & 0xfff) as u16,
        (m >> 16) & 0xffff_ffff_ffff
    )
}

/// The machine name in a test node's name (`<prefix>-pool-0` → `pool`, `<prefix>-vm-0` → `vm-0`).
pub fn machine_of(harness: &Harness) -> impl Fn(&str) -> String + '_ {
    move |node: &str| {
        let rest = node
            .strip_prefix(&format!("{}-", harness.prefix))
            .unwrap_or(node);
        if rest == VM {
            return VM.to_owned();
        }
        rest.rsplit_once('-').map_or(rest, |(m, _)| m).to_owned()
    }
}

pub fn is_active(mic: &RunningMic) -> bool {
    mic.active.load(Ordering::SeqCst)
}
