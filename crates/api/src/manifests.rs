//! The files of `deploy/crds/`: one per CRD, and one with the warning policies and their
//! bindings. `crdgen` writes them and a test fails when the committed ones drift.

use serde::Serialize;

use crate::crd::crds;
use crate::policy::warning_policies;

/// A file under `deploy/crds/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// `<plural>.aadpodidentity.k8s.io.yaml` or [`WARNING_POLICIES_FILE`].
    pub file_name: String,
    /// The YAML documents, after a header saying how they were generated.
    pub yaml: String,
}

/// The file holding the ValidatingAdmissionPolicies and their bindings.
pub const WARNING_POLICIES_FILE: &str = "warning-policies.yaml";

const GENERATED_HEADER: &str = "# Generated from crates/api by \
    `K8S_OPENAPI_ENABLED_VERSION=1.36 cargo run -p podid-api --bin crdgen`; do not edit.\n";

/// Every file of `deploy/crds/`: the four CRDs, then the warning policies.
pub fn manifests() -> Vec<Manifest> {
    let crd_files = crds().into_iter().map(|crd| Manifest {
        file_name: format!("{}.yaml", crd.metadata.name.as_deref().unwrap_or_default()),
        yaml: format!("{GENERATED_HEADER}{}", to_yaml(&crd)),
    });
    let policy_documents: String = warning_policies()
        .iter()
        .flat_map(|p| [to_yaml(&p.policy), to_yaml(&p.binding)])
        .map(|document| format!("---\n{document}"))
        .collect();
    crd_files
        .chain([Manifest {
            file_name: WARNING_POLICIES_FILE.to_owned(),
            yaml: format!("{GENERATED_HEADER}{policy_documents}"),
        }])
        .collect()
}

/// Everything in `deploy/crds/` as one multi-document YAML stream, for `kubectl apply -f -`.
pub fn manifests_yaml() -> String {
    manifests()
        .iter()
        .map(|manifest| {
            let body = manifest.yaml.trim_start_matches(GENERATED_HEADER);
            if body.starts_with("---\n") {
                body.to_owned()
            } else {
                format!("---\n{body}")
            }
        })
        .collect()
}

fn to_yaml(object: &impl Serialize) -> String {
    // Kubernetes objects are plain data (strings, maps, lists, numbers); serializing one cannot
    // fail.
    serde_yaml_ng::to_string(object).expect("a Kubernetes object serializes to YAML")
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::admissionregistration::v1::{
        ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
    };
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use serde::Deserialize;
    use serde_json::Value;

    use super::*;

    fn documents(yaml: &str) -> Vec<Value> {
        serde_yaml_ng::Deserializer::from_str(yaml)
            .map(|document| Value::deserialize(document).unwrap())
            .collect()
    }

    #[test]
    fn files_are_named_after_the_crds_then_the_policies() {
        let names: Vec<String> = manifests().into_iter().map(|m| m.file_name).collect();
        assert_eq!(
            names,
            [
                "azureidentities.aadpodidentity.k8s.io.yaml",
                "azureidentitybindings.aadpodidentity.k8s.io.yaml",
                "azureassignedidentities.aadpodidentity.k8s.io.yaml",
                "azurepodidentityexceptions.aadpodidentity.k8s.io.yaml",
                "warning-policies.yaml",
            ]
        );
        for manifest in manifests() {
            assert!(
                manifest.yaml.starts_with(GENERATED_HEADER),
                "{}",
                manifest.file_name
            );
        }
    }

    #[test]
    fn policies_file_holds_each_policy_followed_by_its_binding() {
        let file = manifests().pop().unwrap();
        let documents = documents(&file.yaml);
        let expected: Vec<Value> = warning_policies()
            .into_iter()
            .flat_map(|p| {
                [
                    serde_json::to_value(p.policy).unwrap(),
                    serde_json::to_value(p.binding).unwrap(),
                ]
            })
            .collect();
        assert_eq!(documents, expected);
        for pair in documents.chunks(2) {
            let _: ValidatingAdmissionPolicy = serde_json::from_value(pair[0].clone()).unwrap();
            let _: ValidatingAdmissionPolicyBinding =
                serde_json::from_value(pair[1].clone()).unwrap();
            assert_eq!(pair[0]["kind"], "ValidatingAdmissionPolicy");
            assert_eq!(pair[0]["apiVersion"], "admissionregistration.k8s.io/v1");
        }
    }

    #[test]
    fn yaml_stream_holds_every_file_once() {
        let stream = documents(&manifests_yaml());
        let from_files: Vec<Value> = manifests()
            .iter()
            .flat_map(|manifest| documents(&manifest.yaml))
            .collect();
        assert_eq!(stream, from_files);
        let crds: Vec<CustomResourceDefinition> = stream[..4]
            .iter()
            .map(|document| serde_json::from_value(document.clone()).unwrap())
            .collect();
        assert_eq!(crds, crate::crds());
    }
}
