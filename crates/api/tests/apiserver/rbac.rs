//! RBAC applies to the custom resources like to built-in ones.

use std::time::Duration;

use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use kube::api::{Api, ListParams, ObjectMeta, PostParams};
use podid_api::AzureIdentity;
use podid_testkit::{TestEnv, wait_for};

#[tokio::test]
async fn service_account_needs_a_role_to_list_identities() {
    let env = TestEnv::get().await;
    let ns = env.namespace("rbac").await;
    let reader = "identity-reader";
    let as_reader: Api<AzureIdentity> =
        Api::namespaced(env.as_service_account(ns.name(), reader), ns.name());

    match as_reader.list(&ListParams::default()).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 403, "{status:?}");
            assert!(status.message.contains("azureidentities"), "{status:?}");
        }
        other => panic!("expected 403 before any Role exists, got {other:?}"),
    }

    let meta = |name: &str| ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(ns.name().to_owned()),
        ..ObjectMeta::default()
    };
    let role = Role {
        metadata: meta(reader),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec!["aadpodidentity.k8s.io".to_owned()]),
            resources: Some(vec!["azureidentities".to_owned()]),
            verbs: vec!["get".to_owned(), "list".to_owned()],
            ..PolicyRule::default()
        }]),
    };
    let binding = RoleBinding {
        metadata: meta(reader),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".to_owned()),
            kind: "Role".to_owned(),
            name: reader.to_owned(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".to_owned(),
            name: reader.to_owned(),
            namespace: Some(ns.name().to_owned()),
            ..Subject::default()
        }]),
    };
    let admin = env.admin();
    Api::<Role>::namespaced(admin.clone(), ns.name())
        .create(&PostParams::default(), &role)
        .await
        .unwrap();
    Api::<RoleBinding>::namespaced(admin, ns.name())
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();

    let listed = wait_for(
        "the Role to allow listing",
        Duration::from_secs(30),
        || async { as_reader.list(&ListParams::default()).await },
    )
    .await;
    assert!(listed.items.is_empty());

    // Only what the Role grants: no other namespace.
    let elsewhere: Api<AzureIdentity> =
        Api::namespaced(env.as_service_account(ns.name(), reader), "default");
    match elsewhere.list(&ListParams::default()).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 403, "{status:?}"),
        other => panic!("expected 403 in another namespace, got {other:?}"),
    }
}
