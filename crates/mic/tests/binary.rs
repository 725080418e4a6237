//! podid's `mic` binary as a process, configured as it is deployed (azure.json, a custom cloud
//! file, the CA, `MIC_POD_NAMESPACE`, a kubeconfig): it assigns, stops cleanly on SIGTERM and
//! releases its locks, signs in through IMDS with `useManagedIdentityExtension`, and picks up
//! an edited azure.json.

mod support;

use podid_emulator::testing::Surface;
use serde_json::json;
use support::process::lock_holders;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mic_binary_assigns_and_releases_its_locks_on_sigterm() {
    let h = Harness::new("mic-bin").await;
    let node = h.vmss_node(POOL, 0).await;
    h.identity("a", NODE_RG, "id-a").await;
    h.binding("a", "a", "a").await;
    h.pod("app", "a", &node).await;

    let mut mic = h.start_mic_process(&h.mic_options("podid-mic-0")).await;
    mic.wait_active().await;
    h.wait_status(&h.aai_name("app", "a"), "Assigned").await;
    h.wait_identities(POOL, &["kubelet", "id-a"]).await;
    assert_eq!(
        lock_holders(&h.admin, h.ns.name()).await,
        (Some("podid-mic-0".into()), Some("podid-mic-0".into()))
    );

    let status = mic.terminate().await;
    assert!(status.success(), "{status}\n{}", mic.log());
    // Released as client-go's ReleaseOnCancel does: the holder emptied in both locks.
    assert_eq!(
        lock_holders(&h.admin, h.ns.name()).await,
        (Some(String::new()), Some(String::new())),
        "{}",
        mic.log()
    );
    // Stopping removes nothing.
    assert_eq!(h.identities_on(POOL).await.len(), 2);
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mic_binary_signs_in_through_imds_with_the_managed_identity_extension() {
    let h = Harness::new("mic-bin-msi").await;
    // The kubelet identity (on the scale set) gets MIC's roles.
    for role in ["Virtual Machine Contributor", "Managed Identity Operator"] {
        let reply = h
            .emu
            .admin(
                reqwest::Method::POST,
                "/admin/arm/role-assignments",
                Some(&json!({
                    "principal": "kubelet",
                    "role": role,
                    "scope": format!("/subscriptions/{}/resourceGroups/{NODE_RG}", h.sub),
                })),
            )
            .await;
        assert!(reply.status.is_success(), "{role}: {:?}", reply.body);
    }
    let node = h.vmss_node(POOL, 0).await;
    h.identity("a", NODE_RG, "id-a").await;
    h.binding("a", "a", "a").await;
    h.pod("app", "a", &node).await;

    let mut options = h.mic_options("podid-mic-msi");
    options.azure_json = json!({
        "cloud": "AzureStackCloud",
        "tenantId": podid_emulator::testing::TENANT,
        "subscriptionId": h.sub,
        "resourceGroup": NODE_RG,
        "vmType": "vmss",
        "useManagedIdentityExtension": true,
        "userAssignedIdentityID": KUBELET_CLIENT,
    });
    // The IMDS of the scale set instance MIC would run on.
    options.imds_endpoint = h.emu.imds_base(&format!("{POOL}_0")).to_owned();
    let mut mic = h.start_mic_process(&options).await;
    mic.wait_active().await;
    h.wait_status(&h.aai_name("app", "a"), "Assigned").await;
    h.wait_identities(POOL, &["kubelet", "id-a"]).await;
    let (imds_tokens, imds_ok) = h.emu.counter("imds.token", 200).await;
    assert!(imds_ok >= 1, "{imds_tokens} IMDS token requests");
    assert!(
        h.emu.journal(Some(Surface::Entra)).await.is_empty(),
        "no service principal sign-in"
    );
    assert!(mic.terminate().await.success(), "{}", mic.log());
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mic_binary_uses_new_credentials_once_azure_json_changes() {
    let h = Harness::new("mic-bin-reread").await;
    let node = h.vmss_node(POOL, 0).await;
    h.identity("a", NODE_RG, "id-a").await;
    h.binding("a", "a", "a").await;

    let mut options = h.mic_options("podid-mic-reread");
    options.azure_json["aadClientSecret"] = json!("not-the-secret");
    let mut mic = h.start_mic_process(&options).await;
    mic.wait_active().await;
    h.pod("app", "a", &node).await;
    let name = h.aai_name("app", "a");
    h.wait_status(&name, "Created").await;
    // Entra ID refuses the secret; nothing reaches the scale set.
    podid_testkit::wait_for("Entra ID to refuse the secret", PATIENCE, || async {
        let refused = h
            .emu
            .journal(Some(Surface::Entra))
            .await
            .iter()
            .any(|entry| entry["status"].as_u64() == Some(401));
        refused.then_some(())
    })
    .await;
    assert!(h.patches(POOL).await.is_empty());

    mic.write_azure_json(&h.azure_json());
    h.wait_status(&name, "Assigned").await;
    h.wait_identities(POOL, &["kubelet", "id-a"]).await;
    assert!(mic.terminate().await.success(), "{}", mic.log());
    h.finish().await;
}
