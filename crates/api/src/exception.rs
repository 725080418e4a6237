//! AzurePodIdentityException: pods whose token requests the node agent passes through unchecked.

use std::collections::BTreeMap;

use kube::{CustomResource, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// AzurePodIdentityExceptionSpec matches pods with the selector defined. If request originates
/// from a pod that matches the selector, nmi will proxy the request and send response back
/// without any validation.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "aadpodidentity.k8s.io",
    version = "v1",
    kind = "AzurePodIdentityException",
    plural = "azurepodidentityexceptions",
    singular = "azurepodidentityexception",
    namespaced,
    status = "AzurePodIdentityExceptionStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "AzurePodIdentityException contains the pod selectors for all pods that don't require NMI to process and request token on their behalf."
)]
pub struct AzurePodIdentityExceptionSpec {
    /// A pod of the same namespace is excepted when any one of these labels is on the pod with an
    /// equal value (values compared case-insensitively, keys exactly).
    #[serde(rename = "podLabels", skip_serializing_if = "Option::is_none")]
    pub pod_labels: Option<BTreeMap<String, String>>,
}

/// AzurePodIdentityExceptionStatus contains the status of an AzurePodIdentityException.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct AzurePodIdentityExceptionStatus {
    /// Unused; kept for compatibility.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

impl AzurePodIdentityExceptionSpec {
    /// Whether a pod with these labels is excepted by this spec: some key of `podLabels` is also
    /// a pod label, and the two values are equal ignoring case.
    pub fn matches(&self, pod_labels: &BTreeMap<String, String>) -> bool {
        self.pod_labels.iter().flatten().any(|(key, value)| {
            pod_labels
                .get(key)
                .is_some_and(|pod_value| equal_ignoring_case(pod_value, value))
        })
    }
}

/// Whether a pod in `pod_namespace` with `pod_labels` is excepted by any of `exceptions`; only
/// exceptions in the pod's own namespace count.
pub fn is_pod_excepted<'a>(
    pod_namespace: &str,
    pod_labels: &BTreeMap<String, String>,
    exceptions: impl IntoIterator<Item = &'a AzurePodIdentityException>,
) -> bool {
    exceptions.into_iter().any(|exception| {
        exception.namespace().as_deref() == Some(pod_namespace)
            && exception.spec.matches(pod_labels)
    })
}

/// Case-insensitive equality by Unicode lowercase mapping, close to Go's `strings.EqualFold`
/// that upstream uses (label values themselves are ASCII).
fn equal_ignoring_case(left: &str, right: &str) -> bool {
    left.chars()
        .flat_map(char::to_lowercase)
        .eq(right.chars().flat_map(char::to_lowercase))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn exception(namespace: &str, pod_labels: &[(&str, &str)]) -> AzurePodIdentityException {
        let mut exception = AzurePodIdentityException::new(
            "exception",
            AzurePodIdentityExceptionSpec {
                pod_labels: Some(labels(pod_labels)),
            },
        );
        exception.metadata.namespace = Some(namespace.to_owned());
        exception
    }

    #[test]
    fn any_single_label_with_equal_value_matches() {
        let spec = exception("default", &[("app", "mic"), ("component", "mic")]).spec;
        assert!(spec.matches(&labels(&[("app", "mic")])));
        assert!(spec.matches(&labels(&[("component", "mic"), ("app", "other")])));
        assert!(!spec.matches(&labels(&[("app", "nmi")])));
        assert!(!spec.matches(&labels(&[])));
    }

    #[test]
    fn values_compare_case_insensitively_keys_exactly() {
        let spec = exception("kube-system", &[("kubernetes.azure.com/managedby", "aks")]).spec;
        assert!(spec.matches(&labels(&[("kubernetes.azure.com/managedby", "AKS")])));
        assert!(!spec.matches(&labels(&[("Kubernetes.azure.com/managedby", "aks")])));
        // Go's EqualFold folds the Kelvin sign to k; so does the lowercase mapping.
        let kelvin = exception("ns", &[("unit", "\u{212A}")]).spec;
        assert!(kelvin.matches(&labels(&[("unit", "k")])));
    }

    #[test]
    fn empty_or_missing_pod_labels_never_match() {
        let missing = AzurePodIdentityExceptionSpec { pod_labels: None };
        assert!(!missing.matches(&labels(&[("app", "mic")])));
        let empty = exception("default", &[]).spec;
        assert!(!empty.matches(&labels(&[("app", "mic")])));
    }

    #[test]
    fn only_exceptions_in_the_pods_namespace_count() {
        let exceptions = [
            exception("default", &[("app", "mic")]),
            exception("kube-system", &[("kubernetes.azure.com/managedby", "aks")]),
        ];
        assert!(is_pod_excepted(
            "default",
            &labels(&[("app", "mic")]),
            &exceptions
        ));
        assert!(!is_pod_excepted(
            "other",
            &labels(&[("app", "mic")]),
            &exceptions
        ));
        assert!(!is_pod_excepted(
            "default",
            &labels(&[("kubernetes.azure.com/managedby", "aks")]),
            &exceptions
        ));
        assert!(!is_pod_excepted("default", &labels(&[("app", "mic")]), []));
    }

    proptest! {
        #[test]
        fn matching_ignores_ascii_case_of_values(key in "[a-z]{1,10}", value in "[a-zA-Z0-9._-]{0,20}") {
            let spec = exception("ns", &[(&key, &value.to_ascii_uppercase())]).spec;
            prop_assert!(spec.matches(&labels(&[(&key, &value.to_ascii_lowercase())])));
        }
    }
}
