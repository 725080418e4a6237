//! The RBAC an install manifest ships for one ServiceAccount, applied into the test cluster, so
//! a component under test acts with exactly the permissions it is installed with: one source of
//! truth for the rules, and a test fails when they lack something the component calls.

use kube::Client;
use serde_json::Value;

use crate::{Error, apply_yaml, parse_documents};

const BINDINGS: [&str; 2] = ["ClusterRoleBinding", "RoleBinding"];

/// The roles a manifest binds to one ServiceAccount, and those bindings, as written there.
#[derive(Debug, Clone)]
pub struct ShippedRbac {
    namespace: String,
    name: String,
    objects: Vec<Value>,
}

impl ShippedRbac {
    /// Reads from `manifest` every ClusterRoleBinding and RoleBinding naming ServiceAccount
    /// `service_account` as a subject, and the ClusterRoles and Roles they refer to, which must
    /// be in the manifest too.
    pub fn from_manifest(manifest: &str, service_account: &str) -> Result<Self, Error> {
        let documents: Vec<Value> = parse_documents(manifest)?
            .iter()
            .map(|o| serde_json::to_value(o).expect("a parsed object serializes"))
            .collect();
        let problem = |detail: String| Error::Rbac {
            service_account: service_account.to_owned(),
            detail,
        };
        let mut namespace = None;
        let mut objects = Vec::new();
        for binding in documents.iter().filter(|d| BINDINGS.contains(&kind(d))) {
            let Some(subject) = binding["subjects"].as_array().and_then(|subjects| {
                subjects.iter().find(|s| {
                    s["kind"] == "ServiceAccount" && s["name"].as_str() == Some(service_account)
                })
            }) else {
                continue;
            };
            let subject_namespace = subject["namespace"].as_str().unwrap_or_default();
            match namespace {
                None => namespace = Some(subject_namespace),
                Some(seen) if seen != subject_namespace => {
                    return Err(problem(format!(
                        "its bindings name it in namespaces {seen} and {subject_namespace}"
                    )));
                }
                Some(_) => {}
            }
            let role_kind = binding["roleRef"]["kind"].as_str().unwrap_or_default();
            let role_name = binding["roleRef"]["name"].as_str().unwrap_or_default();
            let role = documents
                .iter()
                .find(|d| {
                    kind(d) == role_kind
                        && d["metadata"]["name"] == role_name
                        // A RoleBinding may grant a ClusterRole; a Role is its binding's namespace's.
                        && (role_kind != "Role"
                            || d["metadata"]["namespace"] == binding["metadata"]["namespace"])
                })
                .ok_or_else(|| {
                    problem(format!(
                        "{} {} refers to {role_kind} {role_name}, which the manifest lacks",
                        kind(binding),
                        binding["metadata"]["name"]
                    ))
                })?;
            objects.extend([role.clone(), binding.clone()]);
        }
        let namespace = namespace
            .ok_or_else(|| problem("no binding in the manifest names it".to_owned()))?
            .to_owned();
        Ok(Self {
            namespace,
            name: service_account.to_owned(),
            objects,
        })
    }

    /// The namespace the manifest's bindings put the ServiceAccount in.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The ServiceAccount's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The same RBAC with `suffix` appended to every role and binding name, so that two
    /// manifests' copies of one role (NMI's standard and managed ones) can be bound side by side.
    pub fn with_suffix(mut self, suffix: &str) -> Self {
        for object in &mut self.objects {
            append(&mut object["metadata"]["name"], suffix);
            if BINDINGS.contains(&kind(object)) {
                append(&mut object["roleRef"]["name"], suffix);
            }
        }
        self
    }

    /// Applies the roles and bindings as shipped (server-side apply, so again is a no-op), and
    /// copies the namespaced Roles and their RoleBindings into each of `also_in`: the tests'
    /// own namespaces that stand for the one the manifest grants (a leader-election lock's).
    pub async fn apply(&self, client: &Client, also_in: &[&str]) -> Result<(), Error> {
        let mut documents = self.objects.clone();
        for namespace in also_in {
            for object in self
                .objects
                .iter()
                .filter(|o| matches!(kind(o), "Role" | "RoleBinding"))
            {
                let mut copy = object.clone();
                copy["metadata"]["namespace"] = Value::from(*namespace);
                documents.push(copy);
            }
        }
        // JSON documents are YAML documents.
        let yaml = documents
            .iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join("\n---\n");
        apply_yaml(client, &self.namespace, &yaml).await.map(drop)
    }
}

fn kind(document: &Value) -> &str {
    document["kind"].as_str().unwrap_or_default()
}

fn append(name: &mut Value, suffix: &str) {
    *name = Value::from(format!("{}{suffix}", name.as_str().unwrap_or_default()));
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = r#"
apiVersion: v1
kind: ServiceAccount
metadata: { name: sa, namespace: home }
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: { name: wide }
rules: [{ apiGroups: [""], resources: [pods], verbs: [list] }]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: { name: wide }
subjects: [{ kind: ServiceAccount, name: sa, namespace: home }]
roleRef: { apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: wide }
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: { name: lock, namespace: home }
rules: [{ apiGroups: [coordination.k8s.io], resources: [leases], verbs: [get] }]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: { name: lock, namespace: home }
subjects: [{ kind: ServiceAccount, name: sa, namespace: home }]
roleRef: { apiGroup: rbac.authorization.k8s.io, kind: Role, name: lock }
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: { name: other }
subjects: [{ kind: ServiceAccount, name: someone-else, namespace: home }]
roleRef: { apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: missing }
"#;

    fn names(rbac: &ShippedRbac) -> Vec<String> {
        rbac.objects
            .iter()
            .map(|o| format!("{}/{}", kind(o), o["metadata"]["name"].as_str().unwrap()))
            .collect()
    }

    #[test]
    fn takes_the_roles_bound_to_the_service_account_and_nothing_else() {
        let rbac = ShippedRbac::from_manifest(MANIFEST, "sa").unwrap();
        assert_eq!((rbac.namespace(), rbac.name()), ("home", "sa"));
        assert_eq!(
            names(&rbac),
            [
                "ClusterRole/wide",
                "ClusterRoleBinding/wide",
                "Role/lock",
                "RoleBinding/lock"
            ]
        );
        let renamed = rbac.with_suffix("-x");
        assert_eq!(renamed.objects[1]["roleRef"]["name"], "wide-x");
        assert_eq!(renamed.objects[2]["metadata"]["name"], "lock-x");
    }

    #[test]
    fn a_binding_to_a_role_the_manifest_lacks_is_an_error() {
        let err = ShippedRbac::from_manifest(MANIFEST, "someone-else").unwrap_err();
        assert!(err.to_string().contains("ClusterRole missing"), "{err}");
    }

    #[test]
    fn an_unbound_service_account_is_an_error() {
        let err = ShippedRbac::from_manifest(MANIFEST, "nobody").unwrap_err();
        assert!(err.to_string().contains("no binding"), "{err}");
    }
}
