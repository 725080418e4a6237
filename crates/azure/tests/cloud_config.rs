//! The controller's way in: `azure.json` plus a custom cloud file (`AZURE_ENVIRONMENT_FILEPATH`)
//! naming the emulator, the credential they describe, and the ARM client for that cloud, on the
//! seed world. Signed in as the kubelet identity through a node's IMDS, the client assigns an
//! identity to the node pool, and that identity's tokens then come from another node's IMDS.

mod support;

use std::path::Path;

use podid_azure::arm::{ArmClient, ArmError, IdentityChange, MachineId, MachineKind};
use podid_azure::cloud::{AZURE_ENVIRONMENT_FILEPATH, CloudEnvironment};
use podid_azure::config::CloudConfig;
use podid_azure::credential::IdentitySelector;
use podid_azure::resource_id::ResourceId;
use podid_emulator::testing::{Emulator, SUBSCRIPTION, jwt_claims, uami_id};
use serde_json::json;
use support::*;

const NODE_RG: &str = "Study4Dev-JE-AKS-Study4Dev-JE-AKSResource";
const POOL: &str = "aks-agentpool-23456789-vmss";
const KUBELET_CLIENT: &str = "5d0e8f3a-7c21-4b9e-a6d4-1f2e3c4b5a69";
const DEMO_CLIENT: &str = "cb5569f2-8d09-4de1-a007-e02058e11d15";

/// Writes `akscustom.json` for the emulator and returns the cloud it resolves to, read the way
/// the controller reads it (through the environment variable).
fn emulator_cloud(emu: &Emulator, dir: &Path) -> CloudEnvironment {
    let file = dir.join("akscustom.json");
    let environment = json!({
        "name": "AzureStackCloud",
        "resourceManagerEndpoint": format!("{}/", emu.arm_base()),
        "activeDirectoryEndpoint": format!("{}/", emu.entra_base()),
        "tokenAudience": format!("{}/", emu.arm_base()),
        "managementPortalURL": "",
        "resourceIdentifiers": {}
    });
    std::fs::write(&file, environment.to_string()).expect("write the cloud file");
    let path = file.to_string_lossy().to_string();
    CloudEnvironment::load("AzureStackCloud", |key| {
        (key == AZURE_ENVIRONMENT_FILEPATH).then(|| path.clone())
    })
    .expect("the custom cloud loads")
}

fn client_for(
    emu: &Emulator,
    config: &CloudConfig,
    cloud: &CloudEnvironment,
    node: &str,
) -> ArmClient {
    config.validate().expect("a complete configuration");
    let credential = config
        .auth()
        .expect("a credential")
        .credential(cloud, &http_options(emu), url(emu.imds_base(node)))
        .expect("the credential sets up");
    ArmClient::for_cloud(https(emu), cloud, credential).with_poll_options(poll_options())
}

fn pool() -> MachineId {
    MachineId::new(
        MachineKind::VirtualMachineScaleSet,
        SUBSCRIPTION,
        NODE_RG,
        POOL,
    )
}

#[tokio::test]
async fn the_kubelet_identity_assigns_an_identity_that_another_node_then_serves() {
    let emu = Emulator::start_seed().await;
    emu.set_knobs(json!({"arm": {"lroPolls": 1, "retryAfterSecs": 0}}))
        .await;
    let dir = tempfile::tempdir().expect("a directory");
    let cloud = emulator_cloud(&emu, dir.path());
    let config = CloudConfig::from_azure_json(
        json!({
            "cloud": "AzureStackCloud",
            "tenantId": podid_emulator::testing::TENANT,
            "subscriptionId": SUBSCRIPTION,
            "resourceGroup": NODE_RG,
            "aadClientId": "msi",
            "aadClientSecret": "msi",
            "vmType": "vmss",
            "useManagedIdentityExtension": true,
            "userAssignedIdentityID": KUBELET_CLIENT,
        })
        .to_string()
        .as_bytes(),
    )
    .expect("azure.json parses");
    let client = client_for(&emu, &config, &cloud, &format!("{POOL}_0"));

    let node = imds(&emu, &format!("{POOL}_1"));
    let demo_selector = IdentitySelector::ClientId(DEMO_CLIENT.into());
    let before = node
        .token(&demo_selector, "https://management.azure.com")
        .await;
    assert!(
        before
            .as_ref()
            .err()
            .and_then(|e| e.service())
            .is_some_and(|e| e.is_identity_not_found()),
        "DEMO is not on the pool yet: {before:?}"
    );

    let demo = ResourceId::parse(&uami_id(NODE_RG, "DEMO")).expect("an ID");
    let change = IdentityChange {
        add: [demo.clone()].into(),
        remove: Default::default(),
    };
    assert_eq!(
        client
            .update_identities(&pool(), &change)
            .await
            .expect("assigned")
            .value,
        1
    );

    // The controller's token came from the node's IMDS, for the custom cloud's ARM audience.
    let (_, imds_tokens) = emu.counter("imds.token", 200).await;
    assert_eq!(imds_tokens, 1, "one IMDS token served every ARM call");

    let token = node
        .token(&demo_selector, "https://management.azure.com")
        .await
        .expect("the assigned identity is served");
    assert_eq!(jwt_claims(token.access_token())["appid"], DEMO_CLIENT);
    emu.shutdown().await;
}

#[tokio::test]
async fn a_certificate_configuration_reads_and_is_refused_a_write_without_the_role() {
    let emu = Emulator::start_seed().await;
    let dir = tempfile::tempdir().expect("a directory");
    let cloud = emulator_cloud(&emu, dir.path());
    let pfx = dir.path().join("sp.pfx");
    std::fs::write(&pfx, P12_LEGACY).expect("write the certificate");
    let config = CloudConfig::from_azure_json(
        format!(
            "cloud: AzureStackCloud\ntenantId: {}\naadClientId: {SEED_SP}\naadClientCertPath: {}\naadClientCertPassword: {P12_PASSWORD}\nsubscriptionId: {SUBSCRIPTION}\nresourceGroup: {NODE_RG}\n",
            podid_emulator::testing::TENANT,
            pfx.display()
        )
        .as_bytes(),
    )
    .expect("azure.json as YAML parses");
    let client = client_for(&emu, &config, &cloud, &format!("{POOL}_0"));

    let machine = client
        .get_machine(&pool())
        .await
        .expect("the seed app reads the node group");
    assert!(machine.value.identity.identity_type.user_assigned);
    let err = client
        .update_identities(
            &pool(),
            &IdentityChange {
                add: [ResourceId::parse(&uami_id(NODE_RG, "DEMO")).expect("an ID")].into(),
                remove: Default::default(),
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ArmError::Status(e) if e.status == 403),
        "{err:?}"
    );
    assert_eq!(
        emu.counter("entra.token.v1", 200).await.0,
        1,
        "signed in once, with the certificate"
    );
    emu.shutdown().await;
}
