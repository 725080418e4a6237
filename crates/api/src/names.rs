//! Well-known names shared by the controller, the node agent and user manifests. Their values
//! are part of the wire contract with upstream AAD Pod Identity v1.8, so they never change.

/// API group of all four kinds.
pub const GROUP: &str = "aadpodidentity.k8s.io";
/// The only served and stored version.
pub const VERSION: &str = "v1";
/// `apiVersion` of every object of the four kinds.
pub const API_VERSION: &str = "aadpodidentity.k8s.io/v1";

/// Pod label whose value selects AzureIdentityBindings (`spec.selector`, exact match).
pub const POD_LABEL_KEY: &str = "aadpodidbinding";

/// Label on every AzureAssignedIdentity naming the node of its pod; the node agent lists and
/// watches with the selector `nodename=<node>`.
pub const ASSIGNED_IDENTITY_NODE_LABEL: &str = "nodename";

/// Finalizer the controller puts on every AzureAssignedIdentity it creates.
pub const ASSIGNED_IDENTITY_FINALIZER: &str =
    "azureassignedidentity.finalizers.aadpodidentity.k8s.io";

/// Annotation on an AzureIdentity that restricts it to pods and bindings of its own namespace
/// (key and value are compared exactly, case-sensitively).
pub const BEHAVIOR_ANNOTATION: &str = "aadpodidentity.k8s.io/Behavior";
/// The value of [`BEHAVIOR_ANNOTATION`] that makes an identity namespaced.
pub const BEHAVIOR_NAMESPACED: &str = "namespaced";

/// Name of the AzureAssignedIdentity binding `identity` to pod `pod` in `pod_namespace`:
/// `<pod>-<podNamespace>-<identity>`. Like upstream it is neither truncated nor hashed (existing
/// objects must keep their names), so a name longer than 253 characters fails on create.
pub fn assigned_identity_name(pod: &str, pod_namespace: &str, identity: &str) -> String {
    format!("{pod}-{pod_namespace}-{identity}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_match_upstream_v1_8() {
        assert_eq!(API_VERSION, format!("{GROUP}/{VERSION}"));
        assert_eq!(POD_LABEL_KEY, "aadpodidbinding");
        assert_eq!(ASSIGNED_IDENTITY_NODE_LABEL, "nodename");
        assert_eq!(
            ASSIGNED_IDENTITY_FINALIZER,
            "azureassignedidentity.finalizers.aadpodidentity.k8s.io"
        );
        assert_eq!(BEHAVIOR_ANNOTATION, "aadpodidentity.k8s.io/Behavior");
        assert_eq!(BEHAVIOR_NAMESPACED, "namespaced");
    }

    #[test]
    fn assigned_identity_name_joins_pod_namespace_and_identity() {
        assert_eq!(
            assigned_identity_name("demo", "default", "demo"),
            "demo-default-demo"
        );
        assert_eq!(
            assigned_identity_name("external-dns-7d9f", "external-dns", "dns-id"),
            "external-dns-7d9f-external-dns-dns-id"
        );
    }

    #[test]
    fn assigned_identity_name_is_not_truncated() {
        let pod = "p".repeat(200);
        let name = assigned_identity_name(&pod, "ns", "identity");
        assert_eq!(name.len(), 200 + 1 + 2 + 1 + 8);
    }
}
