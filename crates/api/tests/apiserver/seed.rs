//! The CRDs install, and the user's seed manifests apply unchanged and read back intact.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use kube::core::GroupVersionKind;
use kube::{ResourceExt, discovery};
use podid_api::{
    AzureAssignedIdentity, AzureIdentity, AzureIdentityBinding, AzurePodIdentityException,
};
use podid_testkit::{TestEnv, apply_yaml, create_strict, parse_documents};

use crate::json::missing_from;

const GROUP: &str = "aadpodidentity.k8s.io";

fn seed_dir() -> PathBuf {
    // The seed story's manifests, as its user wrote them (examples/seed/README.md).
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/seed")
}

/// Lists a kind in a namespace (proving it is served) and says whether the list is empty.
async fn list_is_empty<K>(client: &kube::Client, namespace: &str) -> bool
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned,
    K::DynamicType: Default,
{
    Api::<K>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .is_empty()
}

#[tokio::test]
async fn every_crd_is_established_and_served() {
    let env = TestEnv::get().await;
    let crds: Api<CustomResourceDefinition> = Api::all(env.admin());
    let expected: BTreeSet<String> = podid_api::crds()
        .iter()
        .filter_map(|crd| crd.metadata.name.clone())
        .collect();
    assert_eq!(expected.len(), 4, "{expected:?}");
    for name in &expected {
        let crd = crds.get(name).await.unwrap();
        let established = crd
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .into_iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        assert!(established, "{name} is not Established");
    }
    let ns = env.namespace("crds").await;
    let client = env.admin();
    assert!(list_is_empty::<AzureIdentity>(&client, ns.name()).await);
    assert!(list_is_empty::<AzureIdentityBinding>(&client, ns.name()).await);
    assert!(list_is_empty::<AzureAssignedIdentity>(&client, ns.name()).await);
    assert!(list_is_empty::<AzurePodIdentityException>(&client, ns.name()).await);
}

#[tokio::test]
async fn seed_manifests_apply_unchanged_and_read_back_intact() {
    let env = TestEnv::get().await;
    let client = env.admin();
    let mut files: Vec<PathBuf> = std::fs::read_dir(seed_dir())
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", seed_dir().display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    let file_names: BTreeSet<String> = files
        .iter()
        .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
        .collect();
    for known in [
        "azureidentity-demo.yaml",
        "external-dns-identity.yaml",
        "mic-exception.yaml",
        "pod-demo.yaml",
    ] {
        assert!(
            file_names.contains(known),
            "seed file {known} is missing: {file_names:?}"
        );
    }

    for file in &files {
        let yaml = std::fs::read_to_string(file).unwrap();
        let sent = parse_documents(&yaml).unwrap();
        let default_ns = env.namespace("seed").await;
        for namespace in sent.iter().filter_map(ResourceExt::namespace) {
            ensure_namespace(&client, &namespace).await;
        }

        let applied = apply_yaml(&client, default_ns.name(), &yaml)
            .await
            .unwrap_or_else(|e| panic!("{} does not apply: {e}", file.display()));
        assert_eq!(applied.len(), sent.len(), "{}", file.display());

        for (document, stored) in sent.iter().zip(&applied) {
            let types = document.types.clone().unwrap();
            let gvk = GroupVersionKind::try_from(&types).unwrap();
            let (resource, _) = discovery::pinned_kind(&client, &gvk).await.unwrap();
            let namespace = stored.namespace().unwrap();
            let api: Api<DynamicObject> =
                Api::namespaced_with(client.clone(), &namespace, &resource);
            let read = api.get(&document.name_any()).await.unwrap();
            let what = format!(
                "{} {}/{}/{}",
                file.display(),
                types.kind,
                namespace,
                read.name_any()
            );

            let sent_spec = &document.data["spec"];
            let read_spec = &read.data["spec"];
            if gvk.group == GROUP {
                // Custom resources get no defaults: what was sent is exactly what is stored.
                assert_eq!(sent_spec, read_spec, "{what}");
            } else {
                let lost = missing_from(sent_spec, read_spec, "spec");
                assert!(lost.is_empty(), "{what}: {lost:#?}");
            }
            let lost_labels = missing_from(
                &serde_json::to_value(&document.metadata.labels).unwrap(),
                &serde_json::to_value(&read.metadata.labels).unwrap(),
                "metadata.labels",
            );
            assert!(lost_labels.is_empty(), "{what}: {lost_labels:#?}");
            if let Some(ns) = document.namespace() {
                assert_eq!(ns, namespace, "{what}");
            } else {
                assert_eq!(default_ns.name(), namespace, "{what}");
            }
        }
    }
}

/// The user's identities, bindings and exceptions are accepted silently: strict field
/// validation passes and no podid policy warns. Each goes to a fresh namespace, since the seed's
/// own namespaces are shared with the other tests.
#[tokio::test]
async fn seed_custom_resources_pass_strict_validation_without_warnings() {
    let env = TestEnv::get().await;
    let client = env.admin();
    let ns = env.namespace("seed-strict").await;
    let mut checked = 0;
    for file in [
        "azureidentity-demo.yaml",
        "external-dns-identity.yaml",
        "mic-exception.yaml",
    ] {
        let yaml = std::fs::read_to_string(seed_dir().join(file)).unwrap();
        for mut document in parse_documents(&yaml).unwrap() {
            let types = document.types.clone().unwrap();
            let gvk = GroupVersionKind::try_from(&types).unwrap();
            assert_eq!(gvk.group, GROUP, "{file}");
            let (resource, _) = discovery::pinned_kind(&client, &gvk).await.unwrap();
            document.metadata.namespace = None;
            let written = create_strict(
                &client,
                &resource,
                ns.name(),
                &PostParams::default(),
                &document,
            )
            .await
            .unwrap_or_else(|e| panic!("{file} {}: {e}", document.name_any()));
            assert!(
                written.warnings.is_empty(),
                "{file} {}: {:?}",
                document.name_any(),
                written.warnings
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 6);
}

/// Seed manifests hard-code namespaces (`external-dns`, `default`, `kube-system`); several test
/// runs may share one control plane, so an existing namespace is fine.
async fn ensure_namespace(client: &kube::Client, name: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    let namespace = Namespace {
        metadata: kube::api::ObjectMeta {
            name: Some(name.to_owned()),
            ..Default::default()
        },
        ..Default::default()
    };
    match api.create(&PostParams::default(), &namespace).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(e) => panic!("cannot create namespace {name}: {e}"),
    }
}
