//! Upstream AAD Pod Identity's MIC v1.8.17, unmodified, against podid's CRDs, the real control
//! plane and the Azure emulator: the ground for migration tests and benchmarks.
//!
//! Runs only inside a network namespace with no route out, since upstream was written to talk to
//! real Azure: `scripts/in-loopback-netns -- cargo test -p podid-testkit --test upstream_mic`.
//! Outside one, or without the binary (`scripts/upstream-mic build`), every test fails and says
//! so: a test that cannot run has not passed.

use std::time::Duration;

use k8s_openapi::api::core::v1::Endpoints;
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use podid_emulator::testing::worlds::{
    MIC, NODE_RG, OWNER, SCALE_SET, SUBSCRIPTION, TENANT, small_world, uami_id, vmss_id, vmss_path,
};
use podid_emulator::testing::{ClockMode, Emulator, parse_world};
use podid_leader::{LEADER_ANNOTATION, LeaderConfig, LeaderRecord};
use podid_testkit::{
    AzureSide, TestEnv, UpstreamMic, UpstreamMicOptions, apply_yaml, create_node, create_pod,
    ensure_no_route_out, node_with_provider_id, pod_on_node, set_pod_running, try_wait_for,
    unique_name, upstream_mic_binary,
};
use tokio::sync::oneshot;

const LOCK: &str = "aad-pod-identity-mic";
const PATIENCE: Duration = Duration::from_secs(120);
/// The client ID of `id-b` in the small world.
const ID_B_CLIENT: &str = "0000000b-0000-4000-8000-00000000000b";

/// Fails the test, with the reason, outside a loopback-only namespace or without the binary.
fn require_isolation_and_binary() {
    if let Err(e) = ensure_no_route_out() {
        panic!("{e}");
    }
    if let Err(e) = upstream_mic_binary() {
        panic!("{e}");
    }
}

async fn emulator() -> Emulator {
    // Wall time: upstream polls ARM's long-running operations in real time.
    Emulator::start_with(parse_world(&small_world()), ClockMode::Wall).await
}

fn options(env: &TestEnv, emu: &Emulator, namespace: &str, instance: &str) -> UpstreamMicOptions {
    UpstreamMicOptions {
        kubeconfig: env.kubeconfig_path().to_owned(),
        azure: AzureSide {
            arm_base: emu.arm_base().to_owned(),
            entra_base: emu.entra_base().to_owned(),
            ca_file: emu.ca_file().to_owned(),
            tenant_id: TENANT.to_owned(),
            client_id: MIC.to_owned(),
            client_secret: "mic-secret".to_owned(),
            subscription_id: SUBSCRIPTION.to_owned(),
            resource_group: NODE_RG.to_owned(),
        },
        pod_namespace: namespace.to_owned(),
        instance: instance.to_owned(),
        // Per test, so tests running side by side each have their own lock.
        leader_election_namespace: namespace.to_owned(),
        extra_args: Vec::new(),
    }
}

/// Waits for `check`; on timeout fails with upstream's log.
async fn wait_or_show_log<T, F, Fut>(mic: &UpstreamMic, what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    match try_wait_for(what, PATIENCE, check).await {
        Ok(value) => value,
        Err(e) => panic!("{e}\n--- upstream MIC's log ---\n{}", mic.log()),
    }
}

async fn endpoints_lock(client: &Client, namespace: &str) -> Option<LeaderRecord> {
    let endpoints = Api::<Endpoints>::namespaced(client.clone(), namespace)
        .get_opt(LOCK)
        .await
        .ok()??;
    let annotation = endpoints.metadata.annotations?.remove(LEADER_ANNOTATION)?;
    LeaderRecord::from_annotation(&annotation).ok()
}

#[tokio::test]
async fn upstream_mic_assigns_an_identity_through_the_emulator() {
    require_isolation_and_binary();
    let env = TestEnv::get().await;
    let emu = emulator().await;
    let admin = env.admin();
    let ns = env.namespace("upstream-mic").await.name().to_owned();

    let node = unique_name("aks-pool-vmss000000");
    let provider_id = format!("azure://{}/virtualMachines/0", vmss_id(NODE_RG, SCALE_SET));
    create_node(&admin, &node_with_provider_id(&node, &provider_id))
        .await
        .expect("the node is created");
    let identity_id = uami_id(NODE_RG, "id-b");
    apply_yaml(
        &admin,
        &ns,
        &format!(
            "apiVersion: aadpodidentity.k8s.io/v1\nkind: AzureIdentity\nmetadata:\n  name: id-b\n\
             spec:\n  type: 0\n  resourceID: {identity_id}\n  clientID: {ID_B_CLIENT}\n---\n\
             apiVersion: aadpodidentity.k8s.io/v1\nkind: AzureIdentityBinding\nmetadata:\n  name: id-b-binding\n\
             spec:\n  azureIdentity: id-b\n  selector: demo\n"
        ),
    )
    .await
    .expect("the identity and binding apply");
    create_pod(
        &admin,
        &ns,
        &pod_on_node("demo", &[("aadpodidbinding", "demo")], &node),
    )
    .await
    .expect("the pod is created");
    set_pod_running(&admin, &ns, "demo", "10.244.0.5", "10.240.0.4")
        .await
        .expect("the pod runs");

    let mic = UpstreamMic::start(&options(env, &emu, &ns, "upstream-mic-0"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    // Not namespaced: upstream writes the AAI into `default`, named <pod>-<namespace>-<identity>.
    let aais: Api<DynamicObject> = Api::namespaced_with(
        admin.clone(),
        "default",
        &ApiResource::from_gvk(&GroupVersionKind::gvk(
            "aadpodidentity.k8s.io",
            "v1",
            "AzureAssignedIdentity",
        )),
    );
    let aai_name = format!("demo-{ns}-id-b");
    let aai = wait_or_show_log(&mic, "upstream's AAI to become Assigned", || {
        let (aais, aai_name) = (aais.clone(), aai_name.clone());
        async move {
            let aai = aais.get(&aai_name).await.map_err(|e| e.to_string())?;
            match aai.data["status"]["status"].as_str() {
                Some("Assigned") => Ok(aai),
                other => Err(format!("status {other:?}")),
            }
        }
    })
    .await;
    assert_eq!(
        aai.data["spec"]["nodename"],
        node.as_str(),
        "{:?}",
        aai.data
    );
    assert_eq!(aai.data["spec"]["podNamespace"], ns.as_str());

    // The emulator's scale set carries the identity.
    let vmss = emu
        .arm(
            reqwest::Method::GET,
            &vmss_path(),
            Some(&emu.arm_token(OWNER)),
            None,
        )
        .await;
    let assigned = vmss.body["identity"]["userAssignedIdentities"]
        .as_object()
        .map(|ids| ids.keys().map(|k| k.to_lowercase()).collect::<Vec<_>>())
        .unwrap_or_default();
    assert!(
        assigned.contains(&identity_id.to_lowercase()),
        "{assigned:?}\n{}",
        vmss.body
    );

    // Upstream's lock is where and how podid-leader expects it.
    let lock = endpoints_lock(&admin, &ns)
        .await
        .expect("upstream's Endpoints lock");
    assert_eq!(lock.holder_identity, "upstream-mic-0");
    assert_eq!(lock.lease_duration_seconds, 15);
    assert!(
        lock.renew_time.is_some() && lock.acquire_time.is_some(),
        "{lock:?}"
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn podid_leader_and_upstream_mic_never_lead_together() {
    require_isolation_and_binary();
    let env = TestEnv::get().await;
    let emu = emulator().await;
    let admin = env.admin();
    let ns = env.namespace("upstream-lock").await.name().to_owned();
    // Short enough to keep the test quick, long enough that neither side misses a renewal
    // (deadline: half the lease) on a loaded 2-core machine and loses its lead for that.
    let mut short_lease = options(env, &emu, &ns, "upstream-mic-0");
    short_lease.extra_args = vec!["--leader-election-duration=8s".to_owned()];

    // Upstream leads first; podid waits.
    let upstream = UpstreamMic::start(&short_lease)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    wait_or_show_log(&upstream, "upstream to take its Endpoints lock", || async {
        endpoints_lock(&admin, &ns)
            .await
            .filter(|r| r.holder_identity == "upstream-mic-0")
            .ok_or_else(|| "no lock yet".to_owned())
    })
    .await;
    let config = LeaderConfig::new("podid-0")
        .with_lock(&ns, LOCK)
        .with_lease_duration(Duration::from_secs(8));
    let (stop, stopped) = oneshot::channel::<()>();
    let (mut leading, podid) = podid_leader::spawn(admin.clone(), config, async move {
        let _ = stopped.await;
    });
    for _ in 0..25 {
        assert!(
            !*leading.borrow(),
            "podid leads while upstream's MIC does; upstream's log:\n{}",
            upstream.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Upstream goes away without releasing (killed): podid takes over once the lock expires.
    drop(upstream);
    tokio::time::timeout(PATIENCE, leading.wait_for(|leads| *leads))
        .await
        .expect("podid leads after upstream's lock expired")
        .expect("the elector runs");

    // An upstream MIC started now waits for podid, which mirrors its record into the lock.
    let mut late = short_lease.clone();
    late.instance = "upstream-mic-late".to_owned();
    let mut late = UpstreamMic::start(&late)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for _ in 0..25 {
        let lock = endpoints_lock(&admin, &ns).await.expect("the lock");
        assert_eq!(
            lock.holder_identity,
            "podid-0",
            "upstream's log:\n{}",
            late.log()
        );
        assert!(*leading.borrow(), "podid keeps leading");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(late.exited().is_none(), "upstream exited:\n{}", late.log());
    assert!(
        !late.log().contains("successfully acquired lease"),
        "{}",
        late.log()
    );

    // podid stops gracefully and releases: the waiting upstream MIC takes over at its next try.
    let _ = stop.send(());
    podid
        .await
        .expect("the elector task ran")
        .expect("the elector ended cleanly");
    wait_or_show_log(&late, "the late upstream MIC to take over", || async {
        endpoints_lock(&admin, &ns)
            .await
            .filter(|r| r.holder_identity == "upstream-mic-late")
            .ok_or_else(|| "not yet".to_owned())
    })
    .await;
    emu.shutdown().await;
}
