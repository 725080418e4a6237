//! Migration between upstream AAD Pod Identity's MIC v1.8.17 (unmodified) and podid's `mic`
//! binary, both as processes, against the real API server and the Azure emulator: each adopts
//! what the other left (no object recreated, no identity removed, no ARM write), both end a
//! scenario in the same state, and they never write at the same time.
//!
//! Upstream was written to talk to real Azure, so this target runs only inside a network
//! namespace with no route out:
//! `scripts/in-loopback-netns -- cargo test -p podid-mic --test upstream`. Outside one, or
//! without the binary (`scripts/upstream-mic build`), every test fails and says so.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, SecretReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use kube::api::{Api, ListParams, PostParams};
use podid_api::names::{BEHAVIOR_ANNOTATION, BEHAVIOR_NAMESPACED};
use podid_api::{AzureAssignedIdentity, AzureIdentity, AzureIdentitySpec, IdentityType};
use podid_emulator::testing::Surface;
use podid_testkit::{UpstreamMic, ensure_no_route_out, upstream_mic_binary};
use serde_json::Value;
use support::process::{MicProcess, lock_holders};
use support::*;

/// Upstream's MIC; its log is printed if the test fails while it runs.
struct Upstream(UpstreamMic);

impl Drop for Upstream {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- upstream MIC's log ---\n{}", self.0.log());
        }
    }
}

/// Fails the test, with the reason, outside a loopback-only namespace or without the binary.
fn require_isolation_and_binary() {
    if let Err(e) = ensure_no_route_out() {
        panic!("{e}");
    }
    if let Err(e) = upstream_mic_binary() {
        panic!("{e}");
    }
}

async fn start_upstream(h: &Harness, instance: &str) -> Upstream {
    let options = h.upstream_options(instance).await;
    Upstream(
        UpstreamMic::start(&options)
            .await
            .unwrap_or_else(|e| panic!("{e}")),
    )
}

/// The world before the migration: identities a, b, c on three machines (a VMSS with two
/// nodes, another VMSS, a VM), four pods; `d` is bound but no pod uses it yet.
struct Scenario {
    pool_0: String,
    pool2_0: String,
    /// Every AAI the scenario's pods have.
    aais: Vec<String>,
}

async fn scenario(h: &Harness) -> Scenario {
    let pool_0 = h.vmss_node(POOL, 0).await;
    let pool_1 = h.vmss_node(POOL, 1).await;
    let pool2_0 = h.vmss_node(POOL2, 0).await;
    let vm = h.node_vm_node().await;
    for name in ["a", "b", "c", "d"] {
        h.identity(name, NODE_RG, &format!("id-{name}")).await;
        h.binding(name, name, name).await;
    }
    let pods = [
        ("a1", "a", &pool_0),
        ("b1", "b", &pool_1),
        ("a2", "a", &pool2_0),
        ("c1", "c", &vm),
    ];
    let mut aais = Vec::new();
    for (pod, identity, node) in pods {
        h.pod(pod, identity, node).await;
        aais.push(h.aai_name(pod, identity));
    }
    Scenario {
        pool_0,
        pool2_0,
        aais,
    }
}

impl Scenario {
    async fn wait_served(&self, h: &Harness) {
        for name in &self.aais {
            h.wait_status(name, "Assigned").await;
        }
        h.wait_identities(POOL, &["kubelet", "id-a", "id-b"]).await;
        h.wait_identities(POOL2, &["id-a"]).await;
        h.wait_identities(&h.node_vm(), &["id-c"]).await;
    }

    /// A pod of identity `d` is served: its AAI is Assigned and the scale set holds `id-d`,
    /// with every earlier identity still there.
    async fn serve_new_pod(&self, h: &Harness) {
        h.pod("d1", "d", &self.pool_0).await;
        h.wait_status(&h.aai_name("d1", "d"), "Assigned").await;
        h.wait_identities(POOL, &["kubelet", "id-a", "id-b", "id-d"])
            .await;
        h.wait_identities(POOL2, &["id-a"]).await;
        h.wait_identities(&h.node_vm(), &["id-c"]).await;
    }
}

/// This test's AAIs by name: (uid, resourceVersion, status).
async fn aai_versions(h: &Harness) -> BTreeMap<String, (String, String, String)> {
    our_aais(h)
        .await
        .into_iter()
        .map(|aai| {
            let status = Harness::status_of(&aai);
            (
                aai.name_any(),
                (
                    aai.uid().unwrap_or_default(),
                    aai.resource_version().unwrap_or_default(),
                    status,
                ),
            )
        })
        .collect()
}

async fn our_aais(h: &Harness) -> Vec<AzureAssignedIdentity> {
    let api: Api<AzureAssignedIdentity> = Api::all(h.admin.clone());
    api.list(&ListParams::default())
        .await
        .expect("AAIs list")
        .items
        .into_iter()
        .filter(|aai| aai.spec.pod_namespace.as_deref() == Some(h.ns.name()))
        .collect()
}

/// The sequence number of the emulator's latest request.
async fn journal_mark(h: &Harness) -> u64 {
    h.emu
        .journal(None)
        .await
        .iter()
        .filter_map(|entry| entry["seq"].as_u64())
        .max()
        .unwrap_or(0)
}

/// ARM requests after `mark`: (method, path, user agent).
async fn arm_since(h: &Harness, mark: u64) -> Vec<(String, String, String)> {
    h.emu
        .journal(Some(Surface::Arm))
        .await
        .iter()
        .filter(|entry| entry["seq"].as_u64().is_some_and(|seq| seq > mark))
        .map(|entry| {
            let text = |key: &str| entry[key].as_str().unwrap_or_default().to_owned();
            (text("method"), text("path"), text("userAgent"))
        })
        .collect()
}

fn writes(calls: &[(String, String, String)]) -> Vec<(String, String)> {
    calls
        .iter()
        .filter(|(method, _, _)| method == "PATCH" || method == "PUT")
        .map(|(method, path, _)| (method.clone(), path.to_ascii_lowercase()))
        .collect()
}

/// The one PATCH that serving the new pod takes: `id-d` onto the scale set.
fn pool_patch(h: &Harness) -> Vec<(String, String)> {
    vec![(
        "PATCH".to_owned(),
        format!(
            "/subscriptions/{}/resourcegroups/{NODE_RG}/providers/microsoft.compute/virtualmachinescalesets/{POOL}",
            h.sub
        ),
    )]
}

/// Adoption left every AAI as it was: the same object, never written.
fn assert_adopted(
    before: &BTreeMap<String, (String, String, String)>,
    after: &BTreeMap<String, (String, String, String)>,
) {
    assert_kept(before, after);
    for (name, (_, version, _)) in before {
        assert_eq!(&after[name].1, version, "{name} was rewritten");
    }
}

/// Every AAI is still the same object (uid) with the same status.
fn assert_kept(
    before: &BTreeMap<String, (String, String, String)>,
    after: &BTreeMap<String, (String, String, String)>,
) {
    for (name, (uid, _, status)) in before {
        let (uid_now, _, status_now) = after.get(name).unwrap_or_else(|| panic!("{name} is gone"));
        assert_eq!(uid_now, uid, "{name} was recreated");
        assert_eq!(status_now, status, "{name} changed status");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podid_adopts_what_upstream_assigned() {
    require_isolation_and_binary();
    let h = Harness::new("mig-up-to-podid").await;
    let scenario = scenario(&h).await;
    let upstream = start_upstream(&h, "upstream-mic-0").await;
    scenario.wait_served(&h).await;
    let before = aai_versions(&h).await;

    // Killed: its Endpoints lock expires after one lease.
    drop(upstream);
    let mark = journal_mark(&h).await;
    let mut podid = h.start_mic_process(&h.mic_options("podid-mic-0")).await;
    podid.wait_active().await;
    scenario.serve_new_pod(&h).await;

    assert_adopted(&before, &aai_versions(&h).await);
    let calls = arm_since(&h, mark).await;
    assert_eq!(writes(&calls), pool_patch(&h), "{calls:#?}");
    assert!(
        calls
            .iter()
            .all(|(_, _, agent)| agent.starts_with("podid-mic/")),
        "{calls:#?}"
    );
    assert!(podid.terminate().await.success(), "{}", podid.log());
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_adopts_what_podid_assigned() {
    podid_then_upstream("mig-podid-to-up", TypeUpgrade::AlreadyDone).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_new_to_the_cluster_keeps_podids_objects_through_its_type_upgrade() {
    podid_then_upstream("mig-podid-to-new-up", TypeUpgrade::Runs).await;
}

/// Whether upstream's one-time type upgrade runs when it starts.
#[derive(Debug, PartialEq)]
enum TypeUpgrade {
    /// A cluster rolling back to upstream after a migration: upstream's ConfigMap marks it done.
    AlreadyDone,
    /// A cluster that never ran upstream: it PUTs every AAI once, re-serialized by its Go types.
    Runs,
}

async fn podid_then_upstream(prefix: &str, upgrade: TypeUpgrade) {
    require_isolation_and_binary();
    let h = Harness::new(prefix).await;
    let scenario = scenario(&h).await;
    let mut podid = h.start_mic_process(&h.mic_options("podid-mic-0")).await;
    podid.wait_active().await;
    scenario.wait_served(&h).await;
    let before = aai_versions(&h).await;

    // SIGTERM: podid releases both locks, so upstream leads at its first try.
    assert!(podid.terminate().await.success(), "{}", podid.log());
    assert_eq!(
        lock_holders(&h.admin, h.ns.name()).await,
        (Some(String::new()), Some(String::new()))
    );
    if upgrade == TypeUpgrade::AlreadyDone {
        type_upgrade_done(&h).await;
    }
    let mark = journal_mark(&h).await;
    let upstream = start_upstream(&h, "upstream-mic-0").await;
    scenario.serve_new_pod(&h).await;

    let after = aai_versions(&h).await;
    match upgrade {
        TypeUpgrade::AlreadyDone => assert_adopted(&before, &after),
        TypeUpgrade::Runs => {
            assert_kept(&before, &after);
            assert!(upstream.0.log().contains("type upgrade completed"));
        }
    }
    let calls = arm_since(&h, mark).await;
    assert_eq!(writes(&calls), pool_patch(&h), "{calls:#?}");
    assert_eq!(
        lock_holders(&h.admin, h.ns.name()).await.1.as_deref(),
        Some("upstream-mic-0")
    );
    drop(upstream);
    h.finish().await;
}

/// Marks upstream's one-time type upgrade as done in its ConfigMap, as upstream leaves it.
async fn type_upgrade_done(h: &Harness) {
    let config = ConfigMap {
        metadata: ObjectMeta {
            name: Some("aad-pod-identity-config".to_owned()),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(
            "type-upgrade-status".to_owned(),
            "v1.8.17".to_owned(),
        )])),
        ..ConfigMap::default()
    };
    Api::<ConfigMap>::namespaced(h.admin.clone(), h.ns.name())
        .create(&PostParams::default(), &config)
        .await
        .expect("the ConfigMap is created");
}

/// Which MIC runs a scenario.
#[derive(Debug, Clone, Copy)]
enum Which {
    Upstream,
    Podid,
}

/// The scenario, then pod b1 goes; the state it ends in, made comparable across runs (this
/// run's namespace and node prefix replaced, server-set metadata dropped).
async fn run_scenario(which: Which) -> (Vec<Value>, Vec<BTreeSet<String>>) {
    let h = Harness::new(&format!("mig-same-{which:?}")).await;
    let scenario = scenario(&h).await;
    let (mut upstream, mut podid): (Option<Upstream>, Option<MicProcess>) = (None, None);
    match which {
        Which::Upstream => upstream = Some(start_upstream(&h, "upstream-mic-0").await),
        Which::Podid => {
            let mic = podid.insert(h.start_mic_process(&h.mic_options("podid-mic-0")).await);
            mic.wait_active().await;
        }
    }
    scenario.wait_served(&h).await;
    // A service principal (no machine) and a namespaced identity (its AAI in its namespace).
    h.identity_with(
        "sp",
        AzureIdentitySpec {
            identity_type: Some(IdentityType::ServicePrincipalSecret),
            client_id: Some(OWNER_CLIENT.to_owned()),
            tenant_id: Some(podid_emulator::testing::TENANT.to_owned()),
            client_password: Some(SecretReference {
                name: Some("sp-secret".to_owned()),
                namespace: Some(h.ns.name().to_owned()),
            }),
            ..AzureIdentitySpec::default()
        },
    )
    .await;
    h.binding("sp", "sp", "sp").await;
    h.pod("s1", "sp", &scenario.pool_0).await;
    h.wait_status(&h.aai_name("s1", "sp"), "Assigned").await;
    namespaced_identity(&h, "n", "id-d").await;
    h.binding("n", "n", "n").await;
    h.pod("n1", "n", &scenario.pool2_0).await;
    wait_assigned_in(&h, h.ns.name(), &h.aai_name("n1", "n")).await;
    h.wait_identities(POOL2, &["id-a", "id-d"]).await;

    h.delete_pod("b1").await;
    h.wait_gone(&h.aai_name("b1", "b")).await;
    h.wait_identities(POOL, &["kubelet", "id-a"]).await;

    let mut aais: Vec<Value> = our_aais(&h)
        .await
        .iter()
        .map(|aai| comparable(aai, &h))
        .collect();
    aais.sort_by_key(|aai| aai["metadata"]["name"].to_string());
    let mut identities = Vec::new();
    for machine in [POOL.to_owned(), POOL2.to_owned(), h.node_vm()] {
        identities.push(h.identities_on(&machine).await);
    }
    if let Some(mut podid) = podid {
        assert!(podid.terminate().await.success(), "{}", podid.log());
    }
    drop(upstream);
    h.finish().await;
    (aais, identities)
}

/// A type-0 identity with upstream's namespaced annotation.
async fn namespaced_identity(h: &Harness, name: &str, uami: &str) {
    let mut identity = AzureIdentity::new(
        name,
        AzureIdentitySpec {
            identity_type: Some(IdentityType::UserAssignedManagedIdentity),
            resource_id: Some(h.uami_id(NODE_RG, uami)),
            client_id: Some(client_id(uami)),
            ..AzureIdentitySpec::default()
        },
    );
    identity.annotations_mut().insert(
        BEHAVIOR_ANNOTATION.to_owned(),
        BEHAVIOR_NAMESPACED.to_owned(),
    );
    Api::<AzureIdentity>::namespaced(h.admin.clone(), h.ns.name())
        .create(&PostParams::default(), &identity)
        .await
        .expect("the identity is created");
}

async fn wait_assigned_in(h: &Harness, namespace: &str, name: &str) {
    let api: Api<AzureAssignedIdentity> = Api::namespaced(h.admin.clone(), namespace);
    podid_testkit::wait_for(
        &format!("{namespace}/{name} to be Assigned"),
        PATIENCE,
        || async {
            let aai = api.get_opt(name).await.map_err(|e| e.to_string())?;
            match aai.as_ref().map(Harness::status_of).as_deref() {
                Some("Assigned") => Ok(()),
                other => Err(format!("status {other:?}")),
            }
        },
    )
    .await
}

/// An AAI as JSON without what the API server sets (uid, resourceVersion, timestamps,
/// managedFields), here or in the embedded identity and binding, and with this run's
/// namespace and node prefix replaced.
fn comparable(aai: &AzureAssignedIdentity, h: &Harness) -> Value {
    let mut value = serde_json::to_value(aai).expect("an AAI");
    for pointer in [
        "/metadata",
        "/spec/azureIdentityRef/metadata",
        "/spec/azureBindingRef/metadata",
    ] {
        if let Some(metadata) = value.pointer_mut(pointer).and_then(Value::as_object_mut) {
            for key in [
                "uid",
                "resourceVersion",
                "creationTimestamp",
                "generation",
                "managedFields",
            ] {
                metadata.remove(key);
            }
        }
    }
    for reference in ["azureIdentityRef", "azureBindingRef"] {
        go_shape(&mut value["spec"][reference]);
    }
    let text = value
        .to_string()
        .replace(h.ns.name(), "<namespace>")
        .replace(&h.prefix, "<prefix>")
        .replace(&h.sub, "<subscription>");
    serde_json::from_str(&text).expect("JSON")
}

/// An embedded identity or binding as upstream's Go types write it: empty structs written as
/// `{}` (`status`, `clientPassword`), `type: 0` left out. Both shapes read the same (Go's
/// decoder, podid's `is_recorded_by`), so the comparison takes podid's into this one.
fn go_shape(embedded: &mut Value) {
    if embedded["spec"]["type"] == 0 {
        if let Some(spec) = embedded["spec"].as_object_mut() {
            spec.remove("type");
        }
    }
    if let Some(object) = embedded.as_object_mut() {
        object.retain(|_, value| value != &serde_json::json!({}));
    }
    if let Some(spec) = embedded["spec"].as_object_mut() {
        spec.retain(|_, value| value != &serde_json::json!({}));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_mics_end_a_scenario_in_the_same_state() {
    require_isolation_and_binary();
    let (upstream_aais, upstream_identities) = run_scenario(Which::Upstream).await;
    let (podid_aais, podid_identities) = run_scenario(Which::Podid).await;
    assert_eq!(upstream_aais.len(), 5, "{upstream_aais:#?}");
    pretty_assertions::assert_eq!(podid_aais, upstream_aais);
    assert_eq!(podid_identities, upstream_identities);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podid_never_writes_while_upstream_leads() {
    require_isolation_and_binary();
    let h = Harness::new("mig-one-writer").await;
    let scenario = scenario(&h).await;
    let upstream = start_upstream(&h, "upstream-mic-0").await;
    scenario.wait_served(&h).await;
    let upstream_managers = field_managers(&h).await;

    let mark = journal_mark(&h).await;
    let mut podid = h.start_mic_process(&h.mic_options("podid-mic-0")).await;
    // A pod while both run: upstream serves it, podid stays a standby that writes nothing.
    h.pod("d1", "d", &scenario.pool_0).await;
    h.wait_status(&h.aai_name("d1", "d"), "Assigned").await;
    for _ in 0..3 {
        // Together more than two leases: a podid that ignored the lock would have acted.
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(podid.health().await.as_deref(), Ok("Not Active"));
        assert!(podid.exited().is_none(), "{}", podid.log());
    }
    let calls = arm_since(&h, mark).await;
    assert!(
        calls
            .iter()
            .all(|(_, _, agent)| !agent.starts_with("podid-mic/")),
        "podid called ARM while upstream led: {calls:#?}"
    );
    assert_eq!(field_managers(&h).await, upstream_managers);
    assert_eq!(
        lock_holders(&h.admin, h.ns.name()).await.1.as_deref(),
        Some("upstream-mic-0")
    );

    // Upstream dies; podid takes over once the lock expires, and serves the next pod.
    drop(upstream);
    podid.wait_active().await;
    h.pod("c2", "c", &scenario.pool_0).await;
    h.wait_status(&h.aai_name("c2", "c"), "Assigned").await;
    h.wait_identities(POOL, &["kubelet", "id-a", "id-b", "id-c", "id-d"])
        .await;
    assert!(field_managers(&h).await.len() > upstream_managers.len());
    assert_eq!(
        lock_holders(&h.admin, h.ns.name()).await,
        (Some("podid-mic-0".into()), Some("podid-mic-0".into()))
    );
    assert!(podid.terminate().await.success(), "{}", podid.log());
    h.finish().await;
}

/// Every field manager that wrote this test's AAIs (the API server derives it from the
/// writer's User-Agent: upstream's and podid's differ).
async fn field_managers(h: &Harness) -> BTreeSet<String> {
    our_aais(h)
        .await
        .iter()
        .flat_map(|aai| aai.managed_fields().to_vec())
        .filter_map(|entry| entry.manager)
        .collect()
}
