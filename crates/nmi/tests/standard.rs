//! Standard mode: tokens for the identities recorded in AzureAssignedIdentities (upstream's
//! E3, E5, E6, E8, E13, E26), the token cache, single flight and the event-driven wait.

mod support;

use std::time::Duration;

use kube::api::{Api, DeleteParams};
use podid_api::{AssignedIdentityState, AzureAssignedIdentity};
use podid_emulator::testing::Surface;
use support::*;
use tokio::io::AsyncWriteExt;

/// A bound on a broken test only; nothing asserts how long an answer takes.
const GUARD: Duration = Duration::from_secs(120);

#[tokio::test]
async fn a_pod_gets_its_identity_by_client_id_resource_id_or_unspecified() {
    let nmi = Nmi::start().await;
    let pod = nmi.pod("app", &[("aadpodidbinding", "app")]).await;
    let alpha = nmi.identity("alpha", ALPHA_CLIENT, Some(alpha_id()));
    nmi.assign(&pod, &alpha, Some(AssignedIdentityState::Assigned))
        .await;

    let by_client = pod
        .token(VAULT, &format!("&client_id={ALPHA_CLIENT}"))
        .await;
    assert_eq!(by_client.status, 200, "{}", by_client.text);
    assert_eq!(by_client.client_id(), ALPHA_CLIENT);
    let body = by_client.json();
    for key in [
        "access_token",
        "expires_in",
        "expires_on",
        "not_before",
        "resource",
        "token_type",
    ] {
        assert!(body[key].is_string(), "{key} in {body}");
    }
    assert_eq!(body["refresh_token"], "");
    let by_resource = pod
        .token(VAULT, &format!("&mi_res_id={}", alpha_id()))
        .await;
    assert_eq!(by_resource.status, 200, "{}", by_resource.text);
    assert_eq!(by_resource.client_id(), ALPHA_CLIENT);
    let unspecified = pod.token(VAULT, "").await;
    assert_eq!(unspecified.client_id(), ALPHA_CLIENT);

    // NMI asked IMDS by the identity's client ID, once: the other two were cache hits.
    let journal = nmi.emu.journal(Some(Surface::Imds)).await;
    let queries: Vec<&str> = journal.iter().filter_map(|e| e["query"].as_str()).collect();
    assert_eq!(queries.len(), 1, "{queries:?}");
    assert!(
        queries[0].contains(&format!("client_id={ALPHA_CLIENT}")),
        "{queries:?}"
    );
    nmi.stop().await;
}

#[tokio::test]
async fn the_requested_identity_is_served_and_the_first_by_name_when_unspecified() {
    let nmi = Nmi::start_with(short_wait).await;
    let pod = nmi.pod("multi", &[("aadpodidbinding", "multi")]).await;
    let beta = nmi.identity("beta", BETA_CLIENT, None);
    let alpha = nmi.identity("zz-alpha", ALPHA_CLIENT, Some(alpha_id()));
    nmi.assign(&pod, &beta, Some(AssignedIdentityState::Assigned))
        .await;
    nmi.assign(&pod, &alpha, Some(AssignedIdentityState::Assigned))
        .await;

    let asked_alpha = pod
        .token(
            VAULT,
            &format!("&client_id={}", ALPHA_CLIENT.to_uppercase()),
        )
        .await;
    assert_eq!(
        asked_alpha.client_id(),
        ALPHA_CLIENT,
        "{}",
        asked_alpha.text
    );
    let asked_beta = pod.token(VAULT, &format!("&client_id={BETA_CLIENT}")).await;
    assert_eq!(asked_beta.client_id(), BETA_CLIENT);
    // `beta` sorts before `zz-alpha`.
    assert_eq!(pod.token(VAULT, "").await.client_id(), BETA_CLIENT);
    // An identity the pod has no assignment for, although it is on the machine.
    let other = pod
        .token(VAULT, &format!("&client_id={GAMMA_CLIENT}"))
        .await;
    assert_eq!(
        (other.status, other.error().as_str()),
        (400, "invalid_request")
    );
    nmi.stop().await;
}

#[tokio::test]
async fn concurrent_requests_make_one_imds_call_and_the_cache_refreshes_before_expiry() {
    let nmi = Nmi::start().await;
    let alpha = nmi.identity("alpha", ALPHA_CLIENT, None);
    let (pod, _) = nmi.assigned_pod("busy", &alpha).await;

    nmi.emu
        .hold(serde_json::json!({"surface": "imds", "path": "oauth2/token", "times": 1}))
        .await;
    let requests: Vec<_> = (0..6)
        .map(|_| {
            let pod = pod.clone_for_task();
            tokio::spawn(async move { pod.token(VAULT, "").await })
        })
        .collect();
    let held = nmi.emu.wait_held(1).await;
    assert_eq!(held.len(), 1);
    nmi.emu.release_all().await;
    let mut tokens = Vec::new();
    for request in requests {
        let answer = tokio::time::timeout(GUARD, request).await.unwrap().unwrap();
        assert_eq!(answer.status, 200, "{}", answer.text);
        tokens.push(answer.access_token());
    }
    tokens.dedup();
    assert_eq!(tokens.len(), 1);
    assert_eq!(nmi.emu.counter("imds.token", 200).await.0, 1);

    // Near its expiry (IMDS tokens last a day) the token is fetched again.
    nmi.emu.advance_clock(24 * 3600 - 300).await;
    nmi.clock.advance(24 * 3600 - 300);
    let refreshed = pod.token(VAULT, "").await;
    assert_eq!(refreshed.status, 200, "{}", refreshed.text);
    assert_eq!(nmi.emu.counter("imds.token", 200).await.0, 2);
    let metrics = nmi.metrics_text().await;
    assert!(
        metrics.contains("aadpodidentity_nmi_token_cache_hits_total 5"),
        "{metrics}"
    );
    assert!(
        metrics.contains("aadpodidentity_nmi_token_cache_misses_total 2"),
        "{metrics}"
    );
    nmi.stop().await;
}

#[tokio::test]
async fn a_cached_token_is_refused_once_the_assignment_is_gone() {
    // E5/E6: MIC deletes the assignment when the identity or binding goes.
    let nmi = Nmi::start_with(short_wait).await;
    let alpha = nmi.identity("alpha", ALPHA_CLIENT, None);
    let (pod, name) = nmi.assigned_pod("gone", &alpha).await;
    assert_eq!(pod.token(VAULT, "").await.status, 200);

    Api::<AzureAssignedIdentity>::namespaced(nmi.client(), nmi.ns())
        .delete(&name, &DeleteParams::default())
        .await
        .unwrap();
    nmi.wait_assigned_count(&pod, |n| n == 0).await;
    let refused = pod.token(VAULT, "").await;
    assert_eq!(
        (refused.status, refused.error().as_str()),
        (400, "invalid_request"),
        "{}",
        refused.text
    );
    assert!(
        refused.text.contains("Identity not found"),
        "{}",
        refused.text
    );
    assert_eq!(nmi.emu.counter("imds.token", 200).await.0, 1);
    nmi.stop().await;
}

#[tokio::test]
async fn a_pending_pod_waits_for_its_assignment_and_is_answered_when_assigned() {
    // E13: an init container asks while the pod is Pending and the AAI only Created. The
    // interval is far longer than the guard, so only the watch notification can answer.
    let nmi = Nmi::start_with(|s| s.retry.interval = Duration::from_secs(3600)).await;
    let pod = nmi
        .pod_with("init", &[("aadpodidbinding", "init")], "Pending", |_| {})
        .await;
    let alpha = nmi.identity("alpha", ALPHA_CLIENT, None);
    let name = nmi
        .assign(&pod, &alpha, Some(AssignedIdentityState::Created))
        .await;

    let waiting = tokio::spawn({
        let pod = pod.clone_for_task();
        async move { pod.token(VAULT, "").await }
    });
    // The request is inside NMI (not yet at IMDS) until the assignment changes.
    nmi.set_state(&name, AssignedIdentityState::Assigned).await;
    let answer = tokio::time::timeout(GUARD, waiting).await.unwrap().unwrap();
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.client_id(), ALPHA_CLIENT);
    nmi.stop().await;
}

#[tokio::test]
async fn an_identity_still_created_is_404_or_503_with_retry_after() {
    // E26's flags: --retry-attempts-for-created=1 --retry-attempts-for-assigned=1.
    for retry_after in [false, true] {
        let nmi = Nmi::start_with(|s| {
            s.retry.created_attempts = 1;
            s.retry.assigned_attempts = 1;
            s.retry.interval = Duration::from_millis(20);
            s.set_retry_after_header = retry_after;
        })
        .await;
        let pod = nmi.pod("slow", &[("aadpodidbinding", "slow")]).await;
        let alpha = nmi.identity("alpha", ALPHA_CLIENT, None);
        nmi.assign(&pod, &alpha, Some(AssignedIdentityState::Created))
            .await;
        let answer = pod.token(VAULT, "").await;
        if retry_after {
            assert_eq!(
                (answer.status, answer.retry_after.as_deref()),
                (503, Some("20"))
            );
        } else {
            assert_eq!((answer.status, answer.error().as_str()), (404, "not_found"));
        }
        nmi.stop().await;
    }
}

#[tokio::test]
async fn namespaced_identities_serve_only_their_namespace() {
    let nmi = Nmi::start_with(|s| {
        short_wait(s);
        s.force_namespaced = true;
    })
    .await;
    let pod = nmi.pod("ns-app", &[("aadpodidbinding", "x")]).await;
    let mut foreign = nmi.identity("alpha", ALPHA_CLIENT, None);
    foreign.metadata.namespace = Some("elsewhere".into());
    let local = nmi.identity("beta", BETA_CLIENT, None);
    nmi.assign(&pod, &foreign, Some(AssignedIdentityState::Assigned))
        .await;
    let refused = pod
        .token(VAULT, &format!("&client_id={ALPHA_CLIENT}"))
        .await;
    assert_eq!(refused.status, 400, "{}", refused.text);
    nmi.assign(&pod, &local, Some(AssignedIdentityState::Assigned))
        .await;
    assert_eq!(pod.token(VAULT, "").await.client_id(), BETA_CLIENT);
    nmi.stop().await;
}

#[tokio::test]
async fn a_client_that_goes_away_ends_its_wait_for_an_assignment() {
    // The interval is far longer than the guard, and the assignment stays Created: only the
    // client's disconnect can end the wait. A wait that outlived its client would hold the
    // gauge at 1 until the guard fails the test.
    let nmi = Nmi::start_with(|s| s.retry.interval = Duration::from_secs(3600)).await;
    let pod = nmi.pod("leaver", &[("aadpodidbinding", "leaver")]).await;
    let alpha = nmi.identity("alpha", ALPHA_CLIENT, None);
    nmi.assign(&pod, &alpha, Some(AssignedIdentityState::Created))
        .await;
    let waiting = |count: u64| {
        let line = format!("aadpodidentity_nmi_requests_waiting_for_assignment {count}");
        let nmi = &nmi;
        move || {
            let line = line.clone();
            async move {
                nmi.metrics_text()
                    .await
                    .lines()
                    .any(|l| l == line)
                    .then_some(())
            }
        }
    };

    let mut client = pod.connect().await;
    client
        .write_all(
            b"GET /metadata/identity/oauth2/token?resource=https%3A%2F%2Fvault.azure.net HTTP/1.1\r\n\
              Host: 169.254.169.254\r\nMetadata: true\r\n\r\n",
        )
        .await
        .unwrap();
    podid_testkit::wait_for("the request waits in NMI", GUARD, waiting(1)).await;
    drop(client);
    podid_testkit::wait_for("the wait ended with its client", GUARD, waiting(0)).await;
    // NMI never asked IMDS: nothing was assigned.
    assert_eq!(nmi.imds_token_calls().await, 0);
    nmi.stop().await;
}
