//! ARM compute against the emulator, signed in as the small world's MIC service principal:
//! GET, identity PATCHes through the long-running operation, and each failure class
//! (LinkedAuthorizationFailed and FailedIdentityOperation with the refused IDs, 429 with its
//! counters and no retry, an operation that fails, 5xx, a machine being deleted, a token ARM
//! considers expired, no answer).

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use podid_azure::arm::{
    ArmClient, ArmError, IdentityChange, IdentityType, MachineId, MachineKind, PollOptions,
};
use podid_azure::credential::{Credential, EntraEndpoint};
use podid_azure::resource_id::ResourceId;
use podid_emulator::testing::*;
use reqwest::Method;
use serde_json::json;
use support::*;

/// The small world with operations that finish on the second poll and ask for no wait.
async fn start() -> Emulator {
    let emu = Emulator::start(&small_world()).await;
    emu.set_knobs(json!({"arm": {"lroPolls": 1, "retryAfterSecs": 0}}))
        .await;
    emu
}

fn mic(emu: &Emulator) -> ArmClient {
    arm(
        emu,
        Credential::ServicePrincipal(service_principal(
            emu,
            TENANT,
            MIC,
            secret("mic-secret"),
            EntraEndpoint::V1,
        )),
    )
}

fn id(group: &str, name: &str) -> ResourceId {
    ResourceId::parse(&uami_id(group, name)).expect("an identity ID")
}

fn add(ids: impl IntoIterator<Item = ResourceId>) -> IdentityChange {
    IdentityChange {
        add: ids.into_iter().collect(),
        remove: BTreeSet::new(),
    }
}

fn remove(ids: impl IntoIterator<Item = ResourceId>) -> IdentityChange {
    IdentityChange {
        add: BTreeSet::new(),
        remove: ids.into_iter().collect(),
    }
}

async fn identities(
    client: &ArmClient,
    machine: &MachineId,
) -> (IdentityType, BTreeSet<ResourceId>) {
    let m = client.get_machine(machine).await.expect("GET").value;
    (
        m.identity.identity_type,
        m.identity.user_assigned.into_keys().collect(),
    )
}

fn status_error(err: &ArmError) -> &podid_azure::arm::ArmStatusError {
    match err {
        ArmError::Status(e) | ArmError::Throttled(e) => e,
        other => panic!("expected an ARM error answer, got {other:?}"),
    }
}

#[tokio::test]
async fn get_reads_identities_state_and_counters() {
    let emu = start().await;
    let client = mic(&emu);
    let got = client.get_machine(&scale_set()).await.expect("GET");
    let machine = got.value;
    assert_eq!(machine.provisioning_state.as_deref(), Some("Succeeded"));
    assert_eq!(machine.location.as_deref(), Some("eastus"));
    assert_eq!(machine.identity.identity_type, IdentityType::USER_ASSIGNED);
    let a = &machine.identity.user_assigned[&id(NODE_RG, "id-a")];
    assert_eq!(
        a.client_id.as_deref(),
        Some("0000000a-0000-4000-8000-00000000000a")
    );
    assert!(a.principal_id.is_some());
    assert!(
        got.rate_limits.subscription_reads.is_some(),
        "{:?}",
        got.rate_limits
    );
    assert!(
        got.rate_limits
            .resource
            .keys()
            .any(|k| k.starts_with("Microsoft.Compute/GetVMScaleSet")),
        "{:?}",
        got.rate_limits
    );

    let vm = client.get_machine(&vm()).await.expect("GET").value;
    assert_eq!(vm.identity.identity_type, IdentityType::NONE);
    assert!(vm.identity.user_assigned.is_empty());
    emu.shutdown().await;
}

#[tokio::test]
async fn a_missing_machine_is_a_permanent_not_found() {
    let emu = start().await;
    let missing = MachineId::new(
        MachineKind::VirtualMachine,
        SUBSCRIPTION,
        NODE_RG,
        "no-such-vm",
    );
    let err = mic(&emu).get_machine(&missing).await.unwrap_err();
    let e = status_error(&err);
    assert_eq!((e.status, e.error.code.as_str()), (404, "ResourceNotFound"));
    assert!(e.request_id.is_some());
    assert!(!err.is_temporary());
    emu.shutdown().await;
}

#[tokio::test]
async fn identities_are_added_and_removed_through_the_operation() {
    let emu = start().await;
    let client = mic(&emu);
    let (a, b, c) = (
        id(NODE_RG, "id-a"),
        id(NODE_RG, "id-b"),
        id(NODE_RG, "id-c"),
    );

    let added = client
        .update_identities(&scale_set(), &add([b.clone(), c.clone()]))
        .await
        .expect("add");
    assert_eq!(added.value, 1, "one PATCH");
    assert!(
        added.rate_limits.subscription_writes.is_some(),
        "{:?}",
        added.rate_limits
    );
    let (polls, _) = emu.counter("arm.operation.get", 200).await;
    assert_eq!(polls, 2, "InProgress once, then Succeeded");
    assert_eq!(
        identities(&client, &scale_set()).await,
        (
            IdentityType::USER_ASSIGNED,
            [a.clone(), b.clone(), c.clone()].into()
        )
    );

    // Already there: nothing to send.
    assert_eq!(
        client
            .update_identities(&scale_set(), &add([b.clone()]))
            .await
            .expect("no-op")
            .value,
        0
    );

    client
        .update_identities(&scale_set(), &remove([b.clone()]))
        .await
        .expect("remove one");
    assert_eq!(
        identities(&client, &scale_set()).await,
        (IdentityType::USER_ASSIGNED, [a.clone(), c.clone()].into())
    );

    // The last ones go by setting the type to None.
    client
        .update_identities(&scale_set(), &remove([a, c]))
        .await
        .expect("remove the rest");
    assert_eq!(
        identities(&client, &scale_set()).await,
        (IdentityType::NONE, BTreeSet::new())
    );
    let (patches, ok) = emu.counter("arm.vmss.patch", 200).await;
    assert_eq!((patches, ok), (3, 3));
    emu.shutdown().await;
}

#[tokio::test]
async fn a_vm_gets_and_loses_an_identity() {
    let emu = start().await;
    let client = mic(&emu);
    let c = id(NODE_RG, "id-c");
    client
        .update_identities(&vm(), &add([c.clone()]))
        .await
        .expect("add");
    assert_eq!(
        identities(&client, &vm()).await,
        (IdentityType::USER_ASSIGNED, [c.clone()].into())
    );
    client
        .update_identities(&vm(), &remove([c]))
        .await
        .expect("remove");
    assert_eq!(
        identities(&client, &vm()).await,
        (IdentityType::NONE, BTreeSet::new())
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn linked_authorization_failed_names_every_refused_identity() {
    let emu = start().await;
    let client = mic(&emu);
    // MIC may assign identities of Node-RG only.
    let refused = [id(SHARED_RG, "ext-1"), id(SHARED_RG, "ext-2")];
    let mut change = add(refused.clone());
    change.add.insert(id(NODE_RG, "id-b"));
    let err = client
        .update_identities(&scale_set(), &change)
        .await
        .unwrap_err();
    let e = status_error(&err);
    assert_eq!(
        (e.status, e.error.code.as_str()),
        (403, "LinkedAuthorizationFailed")
    );
    assert_eq!(err.failing_identities(), refused.to_vec());
    assert!(!err.is_temporary());

    // What upstream's controller did next: drop the refused ones and try the rest.
    for refused in err.failing_identities() {
        change.add.remove(&refused);
    }
    client
        .update_identities(&scale_set(), &change)
        .await
        .expect("the rest");
    assert!(
        identities(&client, &scale_set())
            .await
            .1
            .contains(&id(NODE_RG, "id-b"))
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn failed_identity_operation_names_the_missing_identity() {
    let emu = start().await;
    let missing = id(NODE_RG, "id-never-created");
    let err = mic(&emu)
        .update_identities(&scale_set(), &add([missing.clone(), id(NODE_RG, "id-b")]))
        .await
        .unwrap_err();
    let e = status_error(&err);
    assert_eq!(
        (e.status, e.error.code.as_str()),
        (400, "FailedIdentityOperation")
    );
    assert_eq!(err.failing_identities(), vec![missing]);
    assert!(!err.is_temporary());
    emu.shutdown().await;
}

#[tokio::test]
async fn throttling_returns_at_once_with_the_wait_and_the_counters() {
    let emu = start().await;
    emu.set_knobs(json!({"arm": {"subscriptionReads": {"capacity": 1, "refillPerSecond": 0.1}}}))
        .await;
    let client = mic(&emu);
    client
        .get_machine(&scale_set())
        .await
        .expect("the first read");
    let err = client.get_machine(&scale_set()).await.unwrap_err();
    assert!(matches!(err, ArmError::Throttled(_)), "{err:?}");
    assert_eq!(err.status(), Some(429));
    assert_eq!(err.code(), Some("SubscriptionRequestsThrottled"));
    assert_eq!(err.retry_after(), Some(Duration::from_secs(10)));
    assert_eq!(
        err.rate_limits().and_then(|r| r.subscription_reads),
        Some(0)
    );
    assert!(err.is_temporary());
    let (gets, throttled) = emu.counter("arm.vmss.get", 429).await;
    assert_eq!(
        (gets, throttled),
        (2, 1),
        "the client did not retry on its own"
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn the_compute_providers_counters_are_surfaced_on_a_throttled_write() {
    let emu = start().await;
    emu.set_knobs(json!({"arm": {"computePolicies": {"scaleSetUpdate": [
        {"name": "VMScaleSetUpdate3Min", "windowSeconds": 180, "limit": 1}
    ]}}}))
    .await;
    let client = mic(&emu);
    client
        .update_identities(&scale_set(), &add([id(NODE_RG, "id-b")]))
        .await
        .expect("the first write");
    let err = client
        .update_identities(&scale_set(), &add([id(NODE_RG, "id-c")]))
        .await
        .unwrap_err();
    assert!(matches!(err, ArmError::Throttled(_)), "{err:?}");
    assert_eq!(err.code(), Some("OperationNotAllowed"));
    let limits = err.rate_limits().expect("counters");
    assert_eq!(
        limits
            .resource
            .get("Microsoft.Compute/VMScaleSetUpdate3Min"),
        Some(&0)
    );
    assert!(err.retry_after().is_some_and(|d| d > Duration::ZERO));
    emu.shutdown().await;
}

#[tokio::test]
async fn an_operation_that_fails_is_reported_with_its_error() {
    let emu = start().await;
    emu.add_fault(json!({"surface": "arm", "method": "PATCH", "path": "virtualMachineScaleSets", "times": 1,
        "action": {"kind": "lroFailure", "code": "InternalExecutionError", "message": "An internal execution error occurred."}}))
        .await;
    let client = mic(&emu);
    let err = client
        .update_identities(&scale_set(), &add([id(NODE_RG, "id-b")]))
        .await
        .unwrap_err();
    match &err {
        ArmError::OperationFailed(op) => {
            assert_eq!(op.status, "Failed");
            assert_eq!(op.error.code, "InternalExecutionError");
            assert_eq!(op.error.message, "An internal execution error occurred.");
        }
        other => panic!("expected a failed operation, got {other:?}"),
    }
    assert_eq!(err.code(), Some("InternalExecutionError"));
    assert!(
        !identities(&client, &scale_set())
            .await
            .1
            .contains(&id(NODE_RG, "id-b"))
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn server_errors_are_temporary_and_keep_retry_after() {
    let emu = start().await;
    emu.add_fault(
        json!({"surface": "arm", "method": "PATCH", "path": "virtualMachineScaleSets", "times": 1,
        "action": {"kind": "error", "status": 503, "code": "ServiceUnavailable", "retryAfter": 4}}),
    )
    .await;
    let err = mic(&emu)
        .update_identities(&scale_set(), &add([id(NODE_RG, "id-b")]))
        .await
        .unwrap_err();
    assert!(matches!(err, ArmError::Status(_)), "{err:?}");
    assert_eq!(
        (err.status(), err.code()),
        (Some(503), Some("ServiceUnavailable"))
    );
    assert_eq!(err.retry_after(), Some(Duration::from_secs(4)));
    assert!(err.is_temporary());
    emu.shutdown().await;
}

#[tokio::test]
async fn a_machine_being_deleted_is_not_patched() {
    let emu = start().await;
    let r = emu
        .admin(
            Method::POST,
            "/admin/arm/provisioning-state",
            Some(&json!({"resource": vmss_id(NODE_RG, SCALE_SET), "state": "Deleting"})),
        )
        .await;
    assert!(r.status.is_success(), "{}", r.body);
    let err = mic(&emu)
        .update_identities(&scale_set(), &add([id(NODE_RG, "id-b")]))
        .await
        .unwrap_err();
    assert!(matches!(err, ArmError::Deleting(_)), "{err:?}");
    assert!(!err.is_temporary());
    assert_eq!(
        emu.counter("arm.vmss.patch", 200).await.0,
        0,
        "no PATCH was sent"
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn an_operation_not_done_in_time_is_a_temporary_timeout() {
    let emu = Emulator::start(&small_world()).await;
    // The manual clock never reaches the operation's deadline.
    emu.set_knobs(json!({"arm": {"retryAfterSecs": 0}})).await;
    let client = mic(&emu).with_poll_options(PollOptions {
        timeout: Duration::ZERO,
        ..poll_options()
    });
    let err = client
        .update_identities(&scale_set(), &add([id(NODE_RG, "id-b")]))
        .await
        .unwrap_err();
    assert!(matches!(err, ArmError::OperationTimedOut(_)), "{err:?}");
    assert!(err.is_temporary());
    emu.shutdown().await;
}

#[tokio::test]
async fn a_token_arm_calls_expired_is_replaced_once() {
    let emu = start().await;
    let client = mic(&emu);
    client.get_machine(&scale_set()).await.expect("GET");
    client
        .get_machine(&scale_set())
        .await
        .expect("GET with the cached token");
    assert_eq!(
        emu.counter("entra.token.v1", 200).await.0,
        1,
        "the token is reused"
    );

    // Past the token's lifetime on ARM's clock (ours has not moved).
    emu.advance_clock(2 * 3600).await;
    client
        .get_machine(&scale_set())
        .await
        .expect("GET after expiry");
    assert_eq!(
        emu.counter("entra.token.v1", 200).await.0,
        2,
        "a fresh token after the 401"
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn a_caller_without_rights_gets_a_permanent_authorization_failure() {
    let emu = start().await;
    let reader = arm(
        &emu,
        Credential::ServicePrincipal(service_principal(
            &emu,
            TENANT,
            READER,
            secret("reader-secret"),
            EntraEndpoint::V2,
        )),
    );
    reader
        .get_machine(&scale_set())
        .await
        .expect("a reader reads");
    let err = reader
        .update_identities(&scale_set(), &add([id(NODE_RG, "id-b")]))
        .await
        .unwrap_err();
    assert_eq!(
        (err.status(), err.code()),
        (Some(403), Some("AuthorizationFailed"))
    );
    assert!(err.failing_identities().is_empty());
    assert!(!err.is_temporary());

    let wrong_secret = arm(
        &emu,
        Credential::ServicePrincipal(service_principal(
            &emu,
            TENANT,
            READER,
            secret("nope"),
            EntraEndpoint::V1,
        )),
    );
    let err = wrong_secret.get_machine(&scale_set()).await.unwrap_err();
    assert!(matches!(err, ArmError::Token(_)), "{err:?}");
    assert_eq!(err.status(), Some(401));
    assert!(!err.is_temporary());
    emu.shutdown().await;
}

#[tokio::test]
async fn no_answer_is_a_temporary_transport_error() {
    let emu = start().await;
    let client = ArmClient::new(
        https(&emu),
        unanswered_url("https"),
        Credential::ServicePrincipal(service_principal(
            &emu,
            TENANT,
            MIC,
            secret("mic-secret"),
            EntraEndpoint::V1,
        )),
        ARM_AUDIENCE,
    );
    let err = client.get_machine(&scale_set()).await.unwrap_err();
    assert!(matches!(err, ArmError::Transport { .. }), "{err:?}");
    assert!(err.is_temporary());
    emu.shutdown().await;
}
