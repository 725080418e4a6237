//! Listing VMs and scale-set instances (the demo app's ARM calls) against the emulator.

mod support;

use podid_azure::arm::ArmError;
use podid_azure::credential::Credential;
use podid_azure::credential::EntraEndpoint;
use podid_emulator::testing::{
    Emulator, NOBODY, NODE_RG, READER, SCALE_SET, SUBSCRIPTION, TENANT, VM,
};
use support::{arm, secret, service_principal};

fn as_principal(emu: &Emulator, client_id: &str, secret_text: &str) -> Credential {
    Credential::ServicePrincipal(service_principal(
        emu,
        TENANT,
        client_id,
        secret(secret_text),
        EntraEndpoint::V1,
    ))
}

#[tokio::test]
async fn a_reader_lists_the_vms_of_a_group_and_the_instances_of_a_scale_set() {
    let emu = Emulator::start(&podid_emulator::testing::small_world()).await;
    let client = arm(&emu, as_principal(&emu, READER, "reader-secret"));

    let vms = client
        .list_virtual_machines(SUBSCRIPTION, NODE_RG)
        .await
        .expect("the reader lists VMs");
    let names: Vec<_> = vms.value.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, [VM]);
    assert!(
        vms.value[0].id.ends_with(&format!("/virtualMachines/{VM}")),
        "{:?}",
        vms.value
    );

    let instances = client
        .list_scale_set_instances(SUBSCRIPTION, NODE_RG, SCALE_SET)
        .await
        .expect("the reader lists the scale set's instances");
    assert_eq!(instances.value.len(), 2, "{:?}", instances.value);
    assert!(instances.value.iter().all(|m| m.id.contains(&format!(
        "/virtualMachineScaleSets/{SCALE_SET}/virtualMachines/"
    ))));
    emu.shutdown().await;
}

#[tokio::test]
async fn a_principal_without_a_role_is_refused_with_arms_error() {
    let emu = Emulator::start(&podid_emulator::testing::small_world()).await;
    let client = arm(&emu, as_principal(&emu, NOBODY, "nobody-secret"));
    let err = client
        .list_virtual_machines(SUBSCRIPTION, NODE_RG)
        .await
        .expect_err("no role, no list");
    assert!(matches!(err, ArmError::Status(_)), "{err:?}");
    assert_eq!(err.status(), Some(403), "{err}");
    assert_eq!(err.code(), Some("AuthorizationFailed"), "{err}");
    emu.shutdown().await;
}
