//! Server-side apply of multi-document YAML, as `kubectl apply --server-side` would do it:
//! user manifests are applied as written, whatever their kind.

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::{self, Scope};
use kube::{Client, ResourceExt};
use serde::Deserialize;

use crate::{Error, FIELD_MANAGER};

/// Applies every document of `yaml` and returns the objects as the server stored them.
///
/// Objects without a namespace go to `default_namespace` when their kind is namespaced. All
/// documents are parsed and their kinds resolved before the first write, so a bad document
/// leaves the cluster untouched.
pub async fn apply_yaml(
    client: &Client,
    default_namespace: &str,
    yaml: &str,
) -> Result<Vec<DynamicObject>, Error> {
    let mut resolved = Vec::new();
    for object in parse_documents(yaml)? {
        let types = object.types.clone().unwrap_or_default();
        let gvk = GroupVersionKind::try_from(&types).map_err(|e| Error::BadApiVersion {
            api_version: types.api_version.clone(),
            detail: e.to_string(),
        })?;
        let (resource, capabilities) =
            discovery::pinned_kind(client, &gvk)
                .await
                .map_err(|source| Error::UnknownKind {
                    api_version: types.api_version.clone(),
                    kind: types.kind.clone(),
                    source,
                })?;
        resolved.push((object, resource, capabilities.scope));
    }
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let mut applied = Vec::with_capacity(resolved.len());
    for (object, resource, scope) in resolved {
        let api: Api<DynamicObject> = match scope {
            Scope::Namespaced => {
                let namespace = object
                    .namespace()
                    .unwrap_or_else(|| default_namespace.to_owned());
                Api::namespaced_with(client.clone(), &namespace, &resource)
            }
            Scope::Cluster => Api::all_with(client.clone(), &resource),
        };
        applied.push(
            api.patch(&object.name_any(), &params, &Patch::Apply(&object))
                .await?,
        );
    }
    Ok(applied)
}

/// Splits multi-document YAML into objects; empty documents are skipped.
pub fn parse_documents(yaml: &str) -> Result<Vec<DynamicObject>, Error> {
    let mut objects = Vec::new();
    for (index, document) in serde_yaml_ng::Deserializer::from_str(yaml).enumerate() {
        let value = serde_json::Value::deserialize(document).map_err(|e| Error::Yaml {
            index,
            detail: e.to_string(),
        })?;
        if value.is_null() {
            continue;
        }
        let object: DynamicObject = serde_json::from_value(value).map_err(|e| Error::Yaml {
            index,
            detail: e.to_string(),
        })?;
        let types = object.types.as_ref();
        if types.is_none_or(|t| t.api_version.is_empty()) {
            return Err(Error::MissingField {
                index,
                field: "apiVersion",
            });
        }
        if types.is_none_or(|t| t.kind.is_empty()) {
            return Err(Error::MissingField {
                index,
                field: "kind",
            });
        }
        if object.metadata.name.as_deref().is_none_or(str::is_empty) {
            return Err(Error::MissingField {
                index,
                field: "metadata.name",
            });
        }
        objects.push(object);
    }
    Ok(objects)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_documents_and_skips_empty_ones() {
        let yaml = "---\n# only a comment\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  k: v\n---\napiVersion: \"aadpodidentity.k8s.io/v1\"\nkind: AzureIdentity\nmetadata:\n  name: b\n  namespace: x\nspec:\n  type: 0\n";
        let objects = parse_documents(yaml).unwrap();
        let names: Vec<_> = objects.iter().map(|o| o.name_any()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(objects[1].namespace().as_deref(), Some("x"));
        assert_eq!(objects[1].data["spec"]["type"], 0);
        assert_eq!(objects[0].data["data"]["k"], "v");
    }

    #[test]
    fn names_the_missing_field() {
        let cases = [
            ("kind: Pod\nmetadata:\n  name: a\n", "apiVersion"),
            ("apiVersion: v1\nmetadata:\n  name: a\n", "kind"),
            ("apiVersion: v1\nkind: Pod\n", "metadata.name"),
        ];
        for (yaml, field) in cases {
            let err = parse_documents(yaml).unwrap_err();
            assert!(err.to_string().contains(field), "{yaml}: {err}");
        }
    }

    #[test]
    fn reports_which_document_is_broken() {
        let yaml = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\n---\n: : :\n";
        let err = parse_documents(yaml).unwrap_err();
        assert!(err.to_string().contains("document 1"), "{err}");
    }
}
