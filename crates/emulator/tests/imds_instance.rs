//! IMDS instance metadata and versions, over real HTTP.

use podid_emulator::testing::*;
use serde_json::{Value, json};

const V: &str = "api-version=2021-02-01";

fn all_strings(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.values().all(all_strings),
        Value::Array(a) => a.iter().all(all_strings),
        Value::String(_) => true,
        _ => false,
    }
}

#[tokio::test]
async fn a_vm_describes_itself_with_string_fields() {
    let emu = Emulator::start(&imds_world()).await;
    let reply = emu
        .imds_get("vm-system", &format!("/metadata/instance?{V}"))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("server"), Some("IMDS/150.870.65.1854"));
    let doc = reply.json();
    assert!(all_strings(&doc), "{doc}");
    let compute = &doc["compute"];
    assert_eq!(compute["subscriptionId"], SUBSCRIPTION);
    assert_eq!(compute["resourceGroupName"], "Node-RG");
    assert_eq!(compute["name"], "vm-system");
    assert_eq!(compute["vmScaleSetName"], "");
    assert_eq!(compute["resourceId"], vm_id(NODE_RG, "vm-system"));
    assert_eq!(compute["location"], "westeurope");
    assert_eq!(compute["azEnvironment"], "AzurePublicCloud");
    assert_eq!(compute["osType"], "Linux");
    assert_eq!(compute["vmSize"], "Standard_D4s_v3");
    assert_eq!(compute["tags"], "");
    assert_eq!(compute["zone"], "");
    let vm_id = compute["vmId"].as_str().expect("vmId");
    assert!(uuid::Uuid::parse_str(vm_id).is_ok(), "{vm_id}");
    let nic = &doc["network"]["interface"][0];
    assert_eq!(nic["ipv4"]["ipAddress"][0]["privateIpAddress"], "10.1.2.3");
    let mac = nic["macAddress"].as_str().expect("mac");
    assert!(
        mac.len() == 12 && mac.chars().all(|c| c.is_ascii_hexdigit()),
        "{mac}"
    );
}

#[tokio::test]
async fn a_scale_set_instance_is_named_after_its_scale_set() {
    let emu = Emulator::start(&imds_world()).await;
    let doc = emu
        .imds_get("aks-pool-vmss_3", &format!("/metadata/instance?{V}"))
        .await
        .json();
    let compute = &doc["compute"];
    assert_eq!(compute["name"], "aks-pool-vmss_3");
    assert_eq!(compute["vmScaleSetName"], "aks-pool-vmss");
    assert_eq!(
        compute["resourceId"],
        format!("{}/virtualMachines/3", vmss_id(NODE_RG, "aks-pool-vmss"))
    );
    assert_eq!(
        doc["network"]["interface"][0]["ipv4"]["ipAddress"][0]["privateIpAddress"],
        "10.240.0.9"
    );
    let other = emu
        .imds_get("aks-pool-vmss_0", &format!("/metadata/instance?{V}"))
        .await
        .json();
    assert_ne!(other["compute"]["vmId"], compute["vmId"]);
    assert_ne!(
        other["network"]["interface"][0]["macAddress"],
        doc["network"]["interface"][0]["macAddress"]
    );
}

#[tokio::test]
async fn sub_paths_walk_the_document_and_leaves_need_text() {
    let emu = Emulator::start(&imds_world()).await;
    let compute = emu
        .imds_get("vm-single", &format!("/metadata/instance/compute?{V}"))
        .await;
    assert_eq!(compute.json()["name"], "vm-single");
    let leaf = emu
        .imds_get_text(
            "vm-single",
            &format!("/metadata/instance/compute/location?{V}&format=text"),
        )
        .await;
    assert_eq!((leaf.status, leaf.text.as_str()), (200, "westeurope"));
    assert_eq!(
        leaf.content_type.as_deref(),
        Some("text/plain; charset=utf-8")
    );
    let ip = emu
        .imds_get_text("vm-single", &format!("/Metadata/instance/network/interface/0/ipv4/ipAddress/0/privateIpAddress?{V}&format=text"))
        .await;
    assert_eq!((ip.status, ip.text.as_str()), (200, "10.240.0.100"));
    let leaf_as_json = emu
        .imds_get(
            "vm-single",
            &format!("/metadata/instance/compute/location?{V}"),
        )
        .await;
    assert_eq!(leaf_as_json.status, 400);
    assert!(
        leaf_as_json.json()["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("Bad request."))
    );
    let listing = emu
        .imds_get_text("vm-single", &format!("/metadata/instance?{V}&format=text"))
        .await;
    assert_eq!(listing.text, "compute/\nnetwork/");
    let missing = emu
        .imds_get("vm-single", &format!("/metadata/instance/compute/nope?{V}"))
        .await;
    assert_eq!(missing.status, 404);
    let bad_format = emu
        .imds_get("vm-single", &format!("/metadata/instance?{V}&format=xml"))
        .await;
    assert_eq!(bad_format.status, 400);
}

#[tokio::test]
async fn instance_errors_use_the_instance_shape() {
    let emu = Emulator::start(&imds_world()).await;
    for query in ["", "?api-version=1999-01-01"] {
        let reply = emu
            .imds_get("vm-single", &format!("/metadata/instance{query}"))
            .await;
        assert_eq!(reply.status, 400, "{query}");
        let body = reply.json();
        assert_eq!(
            body["error"],
            "Bad request. api-version is invalid or was not specified in the request. For more information refer to aka.ms/azureimds"
        );
        assert_eq!(
            body["newest-versions"],
            json!(["2025-04-07", "2024-07-17", "2024-03-15"])
        );
    }
    let reply = emu
        .imds_get_with("vm-single", &format!("/metadata/instance?{V}"), &[])
        .await;
    assert_eq!(reply.status, 400);
    assert_eq!(
        reply.json(),
        json!({"error": "Bad request. Required metadata header not specified"})
    );
    // Versions older than the identity endpoint are fine for instance metadata.
    assert_eq!(
        emu.imds_get("vm-single", "/metadata/instance?api-version=2017-08-01")
            .await
            .status,
        200
    );
    assert_eq!(emu.counter("imds.rejected", 400).await.1, 3);
    assert_eq!(emu.counter("imds.instance", 200).await.1, 1);
}

#[tokio::test]
async fn versions_lists_every_supported_api_version() {
    let emu = Emulator::start(&imds_world()).await;
    let reply = emu.imds_get("vm-none", "/metadata/versions").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let versions = reply.json()["apiVersions"]
        .as_array()
        .expect("list")
        .clone();
    assert_eq!(versions.len(), 35);
    assert!(versions.contains(&json!("2018-02-01")) && versions.contains(&json!("2019-08-01")));
    assert_eq!(
        emu.imds_get_with("vm-none", "/metadata/versions", &[])
            .await
            .status,
        400
    );
    assert_eq!(emu.counter("imds.versions", 200).await, (1, 1));
}
