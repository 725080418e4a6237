//! Least privilege, proven: MIC's shipped roles (deploy/infra/deployment-rbac.yaml, the
//! ClusterRole and the leader-election Role) grant nothing MIC does without.
//!
//! One short scenario runs MIC as it runs in a cluster (podid-leader's elector deciding when
//! the controller leads) as a fresh ServiceAccount bound to copies of the roles. With the roles
//! as shipped it must succeed without a single refusal. Then, for every verb on every resource
//! the roles grant, it runs again with just that one dropped, and MIC must be refused exactly
//! it: the API server's 403, which names the user, the verb and the resource, in MIC's log (a
//! watch or write that failed, or the elector's fatal error, logged as the binary logs it).

mod support;

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Endpoints, Event};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use podid_api::AzureIdentity;
use podid_leader::LeaderConfig;
use podid_mic::controller::Settings;
use podid_mic::metrics::Metrics;
use podid_testkit::{
    CapturedLog, Outcome, Permission, ShippedRbac, TestEnv, unique_name, wait_for,
};
use serde_json::json;
use support::*;

/// The lock's name, upstream's default.
const LOCK: &str = "aad-pod-identity-mic";
/// A retry period of 2 s, so both locks are renewed (`update`) within the scenario, and a
/// renew deadline of 4 s, which a loaded machine keeps.
const LEASE: Duration = Duration::from_secs(8);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_permission_of_mics_roles_is_needed() {
    // The events patch is logged at debug level ("could not update an event").
    let log = podid_testkit::capture_log("warn,podid_mic=debug");
    let shipped = ShippedRbac::from_manifest(MIC_MANIFEST, MIC_SA).expect("MIC's shipped RBAC");
    let permissions = shipped.permissions();
    // Both roles, each rule: a test that silently lost one would prove nothing about it.
    assert_eq!(permissions.len(), 22, "{permissions:#?}");

    podid_testkit::assert_every_permission_needed("MIC", &shipped, log, |dropped| {
        let shipped = shipped.clone();
        async move { run(&shipped, dropped.as_ref(), log).await }
    })
    .await;
}

/// Runs the scenario as a fresh ServiceAccount bound to the shipped roles, less `dropped`.
/// Returns the ServiceAccount's name and how it went: with a permission dropped it ends as
/// soon as MIC is refused it (or the scenario ends, when the permission was not needed).
async fn run(
    shipped: &ShippedRbac,
    dropped: Option<&Permission>,
    log: CapturedLog,
) -> (String, Outcome) {
    let h = Harness::new("mic-rbac").await;
    let sa = unique_name("mic-rbac");
    let rbac = dropped
        .map_or_else(|| shipped.clone(), |p| shipped.clone().without(p))
        .for_service_account(&sa)
        .with_suffix(&format!("-{sa}"));
    rbac.apply(&h.admin, &[h.ns.name()])
        .await
        .expect("the copy applies");
    rbac.wait_granted(&h.admin, &[h.ns.name()], PATIENCE)
        .await
        .expect("the copy takes effect");
    if let Some(permission) = dropped {
        // The elector locks in the test's namespace; the ClusterRole's grants are cluster-wide.
        let namespace = permission.namespace.as_ref().map(|_| h.ns.name());
        let allowed = rbac.allows(&h.admin, permission, namespace).await;
        assert!(!allowed.expect("a review"), "{permission} is still granted");
    }

    let n0 = h.vmss_node(POOL, 0).await;
    h.identity("a", NODE_RG, "id-a").await;
    h.binding("a", "a", "a").await;
    h.pod("one", "a", &n0).await;

    let client = TestEnv::get().await.as_service_account("default", &sa);
    let mut settings = test_settings();
    // A repeated event is patched at once instead of after upstream's 10 minutes.
    settings.event_window = Duration::ZERO;
    let (mic, stop) = start(&h, client, settings, &sa);

    let outcome = tokio::time::timeout(PATIENCE, async {
        match dropped {
            None => {
                scenario(&h, &n0).await;
                Outcome::Succeeded
            }
            Some(permission) => {
                let refused = async {
                    while !permission.refused_in(&log.text(), "default", &sa) {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                };
                tokio::select! {
                    () = scenario(&h, &n0) => {
                        // The last step may have been the refused one.
                        if permission.refused_in(&log.text(), "default", &sa) {
                            Outcome::Refused
                        } else {
                            Outcome::Succeeded
                        }
                    }
                    () = refused => Outcome::Refused,
                }
            }
        }
    })
    .await
    .unwrap_or_else(|_| {
        let text = log.text();
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        panic!(
            "MIC neither finished the scenario nor was refused {dropped:?} within {PATIENCE:?}; \
             the log ends:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )
    });
    let _ = stop.send(());
    mic.abort();
    h.finish().await;
    (sa, outcome)
}

/// Starts the elector (locks in the test's namespace) and the controller following it, both
/// acting as `client`, as the `mic` binary does. Sending on the returned channel makes the
/// elector release its locks and end.
fn start(
    h: &Harness,
    client: Client,
    settings: Settings,
    instance: &str,
) -> (
    tokio::task::JoinHandle<()>,
    tokio::sync::oneshot::Sender<()>,
) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let config = LeaderConfig::new(instance)
        .with_lock(h.ns.name(), LOCK)
        .with_lease_duration(LEASE);
    let (leading, election) = podid_leader::spawn(client.clone(), config, async move {
        let _ = stopped.await;
    });
    let (controller, azure) = h.controller(client, settings, Metrics::new());
    let mic = tokio::spawn(async move {
        let _azure = azure;
        // The controller stops as soon as the elector stops leading; the elector's error,
        // logged as the binary logs it, says why.
        let (_, ended) = tokio::join!(controller.run(leading, std::future::pending()), election);
        match ended {
            Ok(Err(error)) => tracing::error!(%error, "leader election failed"),
            Ok(Ok(())) => {}
            Err(error) => tracing::error!(%error, "leader election task failed"),
        }
    });
    (mic, stop)
}

/// One labelled pod's whole life on a scale set, with something for every permission: MIC
/// leads (lock get and create), lists what existed before it started, watches what is made
/// after, creates an AzureAssignedIdentity and patches it `Assigned` with an event, replaces it
/// when its identity is edited, patches its finalizer away and deletes it when the pod goes,
/// patches the count of a repeated event, and renews both locks.
async fn scenario(h: &Harness, n0: &str) {
    h.wait_status(&h.aai_name("one", "a"), "Assigned").await;
    let locks = lock_versions(&h.admin, h.ns.name()).await;

    let n1 = h.vmss_node(POOL, 1).await;
    h.identity("b", NODE_RG, "id-b").await;
    h.binding("b", "b", "b").await;
    h.pod("two", "b", &n1).await;
    let two = h.aai_name("two", "b");
    h.wait_status(&two, "Assigned").await;

    let identities: Api<AzureIdentity> = Api::namespaced(h.admin.clone(), h.ns.name());
    let edit =
        json!({"spec": {"resourceID": h.uami_id(NODE_RG, "id-c"), "clientID": client_id("id-c")}});
    identities
        .patch("b", &PatchParams::default(), &Patch::Merge(&edit))
        .await
        .expect("the identity is edited");
    wait_for("the replaced assignment", PATIENCE, || async {
        let aai = h.aai(&two).await?;
        let client = aai.spec.azure_identity_ref.as_ref()?.spec.client_id.clone();
        (client == Some(client_id("id-c")) && Harness::status_of(&aai) == "Assigned").then_some(())
    })
    .await;

    h.delete_pod("one").await;
    h.wait_gone(&h.aai_name("one", "a")).await;
    h.pod("one", "a", n0).await;
    h.wait_status(&h.aai_name("one", "a"), "Assigned").await;
    let events: Api<Event> = Api::namespaced(h.admin.clone(), h.ns.name());
    wait_for("binding a's event patched to count 2", PATIENCE, || async {
        let list = events.list(&ListParams::default()).await.expect("events");
        list.items
            .iter()
            .any(|e| {
                e.involved_object.name.as_deref() == Some("a")
                    && e.reason.as_deref() == Some("binding applied")
                    && e.count == Some(2)
            })
            .then_some(())
    })
    .await;

    wait_for("both locks renewed", PATIENCE, || async {
        let now = lock_versions(&h.admin, h.ns.name()).await;
        (now.0 != locks.0 && now.1 != locks.1).then_some(())
    })
    .await;
}

/// The resourceVersions of the Lease and the Endpoints lock.
async fn lock_versions(admin: &Client, namespace: &str) -> (String, String) {
    let lease = Api::<Lease>::namespaced(admin.clone(), namespace)
        .get(LOCK)
        .await
        .expect("the Lease");
    let endpoints = Api::<Endpoints>::namespaced(admin.clone(), namespace)
        .get(LOCK)
        .await
        .expect("the Endpoints lock");
    (
        lease.resource_version().unwrap_or_default(),
        endpoints.resource_version().unwrap_or_default(),
    )
}
