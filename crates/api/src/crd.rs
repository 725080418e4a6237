//! The four CustomResourceDefinitions: kube's derived CRDs, brought to upstream's shape (names,
//! annotation, subresources, nullability, the stray `metadata` properties) and given the
//! refusal rules (crate::rules) and the legacy key declarations (crate::legacy).

use std::collections::BTreeMap;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, CustomResourceSubresources, JSONSchemaProps, JSONSchemaPropsOrArray,
    JSONSchemaPropsOrBool, ValidationRule,
};
use kube::CustomResourceExt;

use crate::kind::SpecKind;
use crate::legacy::legacy_keys;
use crate::rules::{RESOURCE_ID_MAX_LENGTH, Rule, rules_for};
use crate::{
    AzureAssignedIdentity, AzureIdentity, AzureIdentityBinding, AzurePodIdentityException,
};

/// Annotation required on CRDs in a `*.k8s.io` group that did not go through API review.
const API_APPROVAL_ANNOTATION: (&str, &str) = ("api-approved.kubernetes.io", "unapproved");

/// Properties upstream's schema marks `nullable` (its Go pointer fields and the one
/// `+nullable` slice); every other optional field rejects `null` by having it pruned.
const NULLABLE_PROPERTIES: &[&str] = &["replicas", "auxiliaryTenantIDs"];

/// All four CRDs, in a stable order (AzureIdentity, AzureIdentityBinding, AzureAssignedIdentity,
/// AzurePodIdentityException).
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![
        finish(AzureIdentity::crd(), Some(SpecKind::AzureIdentity), true),
        finish(
            AzureIdentityBinding::crd(),
            Some(SpecKind::AzureIdentityBinding),
            true,
        ),
        finish(AzureAssignedIdentity::crd(), None, false),
        finish(
            AzurePodIdentityException::crd(),
            Some(SpecKind::AzurePodIdentityException),
            false,
        ),
    ]
}

fn finish(
    mut crd: CustomResourceDefinition,
    checked: Option<SpecKind>,
    empty_subresources: bool,
) -> CustomResourceDefinition {
    // kube's `annotation` attribute would also stamp it on objects made with `new`.
    crd.metadata.annotations = Some(BTreeMap::from([(
        API_APPROVAL_ANNOTATION.0.to_owned(),
        API_APPROVAL_ANNOTATION.1.to_owned(),
    )]));
    crd.spec.names.list_kind = Some(format!("{}List", crd.spec.names.kind));
    for version in &mut crd.spec.versions {
        // No status subresource: upstream writes status through the main resource, and kube
        // would add one because the types have a status. Upstream's AzureIdentity and
        // AzureIdentityBinding declare an empty `subresources: {}`.
        version.subresources = empty_subresources.then(CustomResourceSubresources::default);
        let Some(schema) = version
            .schema
            .as_mut()
            .and_then(|validation| validation.open_api_v3_schema.as_mut())
        else {
            continue;
        };
        keep_only_upstream_nullables(schema);
        declare_stray_metadata(schema);
        if let Some(kind) = checked
            && let Some(spec) = property_mut(schema, "spec")
        {
            add_checks(spec, kind);
        }
    }
    crd
}

fn property_mut<'a>(
    schema: &'a mut JSONSchemaProps,
    name: &str,
) -> Option<&'a mut JSONSchemaProps> {
    schema.properties.as_mut()?.get_mut(name)
}

fn object_at_mut<'a>(
    schema: &'a mut JSONSchemaProps,
    path: &[&str],
) -> Option<&'a mut JSONSchemaProps> {
    path.iter()
        .try_fold(schema, |object, name| property_mut(object, name))
}

/// Removes `nullable` that kube derives from every `Option`, except where upstream has it. A
/// non-nullable field's explicit `null` is pruned by the API server, so CEL rules never meet one.
fn keep_only_upstream_nullables(schema: &mut JSONSchemaProps) {
    for (name, property) in schema.properties.iter_mut().flatten() {
        if !NULLABLE_PROPERTIES.contains(&name.as_str()) {
            property.nullable = None;
        }
        keep_only_upstream_nullables(property);
    }
    match &mut schema.items {
        Some(JSONSchemaPropsOrArray::Schema(items)) => {
            items.nullable = None;
            keep_only_upstream_nullables(items);
        }
        Some(JSONSchemaPropsOrArray::Schemas(items)) => {
            for item in items {
                item.nullable = None;
                keep_only_upstream_nullables(item);
            }
        }
        None => {}
    }
    if let Some(JSONSchemaPropsOrBool::Schema(values)) = &mut schema.additional_properties {
        values.nullable = None;
        keep_only_upstream_nullables(values);
    }
}

/// Upstream's Go types embed an ObjectMeta in every spec and status, so its CRDs declare a
/// `metadata` object there, and in the spec and status of the objects embedded in an
/// AzureAssignedIdentity. Objects upstream wrote carry `metadata: {}` in those places; declaring
/// it lets them apply with strict field validation and round-trip unchanged.
fn declare_stray_metadata(resource: &mut JSONSchemaProps) {
    for part in ["spec", "status"] {
        let Some(part) = property_mut(resource, part) else {
            continue;
        };
        for (_, embedded) in part.properties.iter_mut().flatten() {
            if embedded.x_kubernetes_embedded_resource == Some(true) {
                declare_stray_metadata(embedded);
            }
        }
        part.properties
            .get_or_insert_default()
            .insert("metadata".to_owned(), stray_metadata());
    }
}

fn stray_metadata() -> JSONSchemaProps {
    // Go serializes the empty ObjectMeta as `{creationTimestamp: null}`. Declaring the key
    // (not nullable) makes the API server drop the null instead of refusing an unknown field,
    // and store `{}` exactly as upstream's CRD did.
    let creation_timestamp = JSONSchemaProps {
        type_: Some("string".to_owned()),
        ..JSONSchemaProps::default()
    };
    JSONSchemaProps {
        description: Some(
            "Unused. Upstream's types embedded an object metadata here; declared so that \
             objects written by upstream apply and round-trip unchanged."
                .to_owned(),
        ),
        type_: Some("object".to_owned()),
        properties: Some(BTreeMap::from([(
            "creationTimestamp".to_owned(),
            creation_timestamp,
        )])),
        ..JSONSchemaProps::default()
    }
}

/// Declares the legacy keys (so they reach the rules and the warning policies instead of being
/// pruned) and attaches the refusal rules to the spec.
fn add_checks(spec: &mut JSONSchemaProps, kind: SpecKind) {
    if kind == SpecKind::AzureIdentity
        && let Some(resource_id) = property_mut(spec, "resourceID")
    {
        resource_id.max_length = Some(RESOURCE_ID_MAX_LENGTH);
    }
    declare_legacy_keys(spec, kind);
    spec.x_kubernetes_validations =
        Some(rules_for(kind).into_iter().map(validation_rule).collect());
}

fn declare_legacy_keys(spec: &mut JSONSchemaProps, kind: SpecKind) {
    // Every copy is taken before any legacy key is inserted, so a legacy `ClientPassword` gets
    // the canonical `{name, namespace}` and not the legacy `Name`/`Namespace` as well.
    let copies: Vec<_> = legacy_keys(kind)
        .filter_map(|key| {
            let canonical = object_at_mut(spec, key.parent)?
                .properties
                .as_ref()?
                .get(key.canonical)?
                .clone();
            let declared = JSONSchemaProps {
                description: Some(format!(
                    "The pre-1.6 spelling of {}, declared so that the API server refuses it or \
                     warns about it instead of silently dropping it.",
                    key.canonical
                )),
                ..canonical
            };
            Some((key, declared))
        })
        .collect();
    for (key, declared) in copies {
        if let Some(parent) = object_at_mut(spec, key.parent) {
            parent
                .properties
                .get_or_insert_default()
                .insert(key.legacy.to_owned(), declared);
        }
    }
}

fn validation_rule(rule: Rule) -> ValidationRule {
    ValidationRule {
        rule: rule.rule,
        message: Some(rule.message),
        field_path: Some(rule.field_path),
        reason: Some(rule.reason.as_str().to_owned()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::legacy::LEGACY_KEYS;
    use crate::rules::Reason;

    fn crd(kind: &str) -> CustomResourceDefinition {
        crds()
            .into_iter()
            .find(|crd| crd.spec.names.kind == kind)
            .unwrap()
    }

    fn schema_json(kind: &str) -> Value {
        let version = crd(kind).spec.versions.remove(0);
        serde_json::to_value(version.schema.unwrap().open_api_v3_schema.unwrap()).unwrap()
    }

    /// Every (path, node) of a schema, depth first.
    fn walk<'a>(path: String, node: &'a Value, out: &mut Vec<(String, &'a Value)>) {
        out.push((path.clone(), node));
        if let Some(properties) = node.get("properties").and_then(Value::as_object) {
            for (name, child) in properties {
                walk(format!("{path}.{name}"), child, out);
            }
        }
        for key in ["items", "additionalProperties"] {
            if let Some(child) = node.get(key).filter(|child| child.is_object()) {
                walk(format!("{path}[{key}]"), child, out);
            }
        }
    }

    fn nodes(kind: &str) -> Vec<(String, Value)> {
        let schema = schema_json(kind);
        let mut out = Vec::new();
        walk(String::new(), &schema, &mut out);
        out.into_iter().map(|(p, v)| (p, v.clone())).collect()
    }

    const KINDS: [&str; 4] = [
        "AzureIdentity",
        "AzureIdentityBinding",
        "AzureAssignedIdentity",
        "AzurePodIdentityException",
    ];

    #[test]
    fn names_scope_and_versions_match_upstream() {
        let expected = [
            ("AzureIdentity", "azureidentities", "azureidentity"),
            (
                "AzureIdentityBinding",
                "azureidentitybindings",
                "azureidentitybinding",
            ),
            (
                "AzureAssignedIdentity",
                "azureassignedidentities",
                "azureassignedidentity",
            ),
            (
                "AzurePodIdentityException",
                "azurepodidentityexceptions",
                "azurepodidentityexception",
            ),
        ];
        let all = crds();
        assert_eq!(all.len(), expected.len());
        for (crd, (kind, plural, singular)) in all.iter().zip(expected) {
            assert_eq!(
                crd.metadata.name.as_deref(),
                Some(format!("{plural}.aadpodidentity.k8s.io").as_str())
            );
            assert_eq!(crd.spec.group, "aadpodidentity.k8s.io");
            assert_eq!(crd.spec.scope, "Namespaced");
            assert_eq!(crd.spec.names.kind, kind);
            assert_eq!(crd.spec.names.plural, plural);
            assert_eq!(crd.spec.names.singular.as_deref(), Some(singular));
            assert_eq!(crd.spec.names.list_kind, Some(format!("{kind}List")));
            assert_eq!(crd.spec.versions.len(), 1);
            let version = &crd.spec.versions[0];
            assert_eq!(version.name, "v1");
            assert!(version.served && version.storage);
            assert_eq!(
                crd.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get("api-approved.kubernetes.io"))
                    .map(String::as_str),
                Some("unapproved")
            );
        }
    }

    #[test]
    fn no_status_subresource_and_empty_subresources_where_upstream_has_them() {
        for kind in KINDS {
            let subresources = crd(kind).spec.versions.remove(0).subresources;
            if matches!(kind, "AzureIdentity" | "AzureIdentityBinding") {
                assert_eq!(
                    subresources,
                    Some(CustomResourceSubresources::default()),
                    "{kind}"
                );
            } else {
                assert_eq!(subresources, None, "{kind}");
            }
        }
        let yaml: String = crds()
            .iter()
            .map(|crd| serde_yaml_ng::to_string(crd).unwrap())
            .collect();
        assert_eq!(yaml.matches("subresources: {}").count(), 2);
        assert!(!yaml.contains("status: {}"));
    }

    #[test]
    fn printer_columns_match_upstream() {
        let columns = |kind: &str| -> Vec<(String, String)> {
            crd(kind).spec.versions[0]
                .additional_printer_columns
                .iter()
                .flatten()
                .map(|c| (c.name.clone(), c.json_path.clone()))
                .collect()
        };
        let owned = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(a, b)| ((*a).into(), (*b).into()))
                .collect()
        };
        assert_eq!(
            columns("AzureIdentity"),
            owned(&[
                ("Type", ".spec.type"),
                ("ClientID", ".spec.clientID"),
                ("Age", ".metadata.creationTimestamp")
            ])
        );
        assert_eq!(
            columns("AzureIdentityBinding"),
            owned(&[
                ("AzureIdentity", ".spec.azureIdentity"),
                ("Selector", ".spec.selector"),
                ("Age", ".metadata.creationTimestamp")
            ])
        );
        assert!(columns("AzureAssignedIdentity").is_empty());
        assert!(columns("AzurePodIdentityException").is_empty());
    }

    #[test]
    fn canonical_properties_have_upstream_types() {
        let schema = schema_json("AzureIdentity");
        let spec = &schema["properties"]["spec"]["properties"];
        for (name, type_) in [
            ("type", "integer"),
            ("resourceID", "string"),
            ("clientID", "string"),
            ("clientPassword", "object"),
            ("tenantID", "string"),
            ("auxiliaryTenantIDs", "array"),
            ("adEndpoint", "string"),
            ("adResourceID", "string"),
            ("replicas", "integer"),
        ] {
            assert_eq!(spec[name]["type"], type_, "{name}");
        }
        assert_eq!(
            spec["clientPassword"]["properties"]["name"]["type"],
            "string"
        );
        assert_eq!(
            spec["clientPassword"]["properties"]["namespace"]["type"],
            "string"
        );
        assert_eq!(spec["resourceID"]["maxLength"], RESOURCE_ID_MAX_LENGTH);

        let schema = schema_json("AzureAssignedIdentity");
        let spec = &schema["properties"]["spec"]["properties"];
        for name in ["pod", "podNamespace", "nodename"] {
            assert_eq!(spec[name]["type"], "string", "{name}");
        }
        let status = &schema["properties"]["status"]["properties"];
        assert_eq!(status["status"]["type"], "string");
        assert_eq!(status["availableReplicas"]["type"], "integer");

        let schema = schema_json("AzurePodIdentityException");
        let labels = &schema["properties"]["spec"]["properties"]["podLabels"];
        assert_eq!(labels["additionalProperties"]["type"], "string");
    }

    #[test]
    fn assigned_identity_refs_are_embedded_resources_without_validation() {
        let schema = schema_json("AzureAssignedIdentity");
        for reference in ["azureIdentityRef", "azureBindingRef"] {
            let node = &schema["properties"]["spec"]["properties"][reference];
            assert_eq!(node["x-kubernetes-embedded-resource"], true, "{reference}");
            for (name, type_) in [
                ("apiVersion", "string"),
                ("kind", "string"),
                ("metadata", "object"),
            ] {
                assert_eq!(
                    node["properties"][name]["type"], type_,
                    "{reference}.{name}"
                );
            }
            assert!(node["properties"]["spec"].is_object());
            assert!(node["properties"]["status"].is_object());
        }
        assert!(schema["properties"]["spec"].get("required").is_none());
        // Snapshots of old identities must stay writable, so the AzureIdentity rules and legacy
        // keys stay out of the embedded copies.
        for (path, node) in nodes("AzureAssignedIdentity") {
            assert!(node.get("x-kubernetes-validations").is_none(), "{path}");
            assert!(node.get("maxLength").is_none(), "{path}");
        }
        let embedded = &schema["properties"]["spec"]["properties"]["azureIdentityRef"];
        assert!(
            embedded["properties"]["spec"]["properties"]
                .get("ResourceID")
                .is_none()
        );
    }

    #[test]
    fn only_upstream_nullable_fields_are_nullable_and_nothing_has_a_default() {
        for kind in KINDS {
            for (path, node) in nodes(kind) {
                assert!(node.get("default").is_none(), "{kind}{path} has a default");
                if node.get("nullable").is_some() {
                    let name = path.rsplit('.').next().unwrap();
                    assert!(
                        NULLABLE_PROPERTIES.contains(&name),
                        "{kind}{path} is nullable"
                    );
                }
            }
        }
    }

    #[test]
    fn nothing_keeps_unknown_fields_as_in_upstream() {
        for kind in KINDS {
            for (path, node) in nodes(kind) {
                assert!(
                    node.get("x-kubernetes-preserve-unknown-fields").is_none(),
                    "{kind}{path} keeps unknown fields"
                );
            }
        }
    }

    #[test]
    fn stray_metadata_is_declared_where_upstream_declares_it() {
        let mut expected = Vec::new();
        for kind in KINDS {
            expected.extend([
                format!("{kind}.spec.metadata"),
                format!("{kind}.status.metadata"),
            ]);
        }
        for reference in ["azureIdentityRef", "azureBindingRef"] {
            for part in ["spec", "status"] {
                expected.push(format!(
                    "AzureAssignedIdentity.spec.{reference}.{part}.metadata"
                ));
            }
        }
        let mut found = Vec::new();
        for kind in KINDS {
            for (path, node) in nodes(kind) {
                if path.ends_with("spec.metadata") || path.ends_with("status.metadata") {
                    assert_eq!(node["type"], "object", "{kind}{path}");
                    assert_eq!(
                        node["properties"],
                        serde_json::json!({"creationTimestamp": {"type": "string"}}),
                        "{kind}{path}"
                    );
                    found.push(format!("{kind}{path}"));
                }
            }
        }
        expected.sort();
        found.sort();
        assert_eq!(found, expected);
    }

    fn validations(node: &Value) -> Vec<ValidationRule> {
        node.get("x-kubernetes-validations")
            .map(|rules| serde_json::from_value(rules.clone()).unwrap())
            .unwrap_or_default()
    }

    #[test]
    fn the_rules_are_on_the_spec_and_nowhere_else() {
        for (kind, spec_kind) in [
            ("AzureIdentity", SpecKind::AzureIdentity),
            ("AzureIdentityBinding", SpecKind::AzureIdentityBinding),
            (
                "AzurePodIdentityException",
                SpecKind::AzurePodIdentityException,
            ),
        ] {
            let expected: Vec<ValidationRule> = rules_for(spec_kind)
                .into_iter()
                .map(validation_rule)
                .collect();
            assert!(!expected.is_empty(), "{kind}");
            for (path, node) in nodes(kind) {
                let found = validations(&node);
                if path == ".spec" {
                    assert_eq!(found, expected, "{kind}");
                } else {
                    assert!(found.is_empty(), "{kind}{path} has rules");
                }
            }
        }
    }

    #[test]
    fn identity_schema_contains_the_key_cel_rules() {
        let schema = schema_json("AzureIdentity");
        let rules: Vec<ValidationRule> = validations(&schema["properties"]["spec"]);
        let texts: Vec<&str> = rules.iter().map(|rule| rule.rule.as_str()).collect();
        assert!(texts.contains(&"!has(self.type) || self.type in [0, 1, 2]"));
        assert!(texts.contains(&"!(has(self.ResourceID)) || (has(self.resourceID))"));
        assert!(texts.iter().any(|r| r.contains(
            "self.resourceID.matches('(?i)/subscriptions/(.+?)/resourcegroups/(.+?)/providers/Microsoft.ManagedIdentity/userAssignedIdentities/(.+)')"
        )));
        assert!(
            texts
                .iter()
                .any(|r| r.contains("self.clientPassword.__namespace__ != ''"))
        );
        for rule in &rules {
            assert!(
                rule.reason.is_some() && rule.field_path.is_some(),
                "{rule:?}"
            );
        }
        let forbidden = rules
            .iter()
            .filter(|rule| rule.reason.as_deref() == Some(Reason::Forbidden.as_str()))
            .count();
        assert!(forbidden > 0);
    }

    #[test]
    fn legacy_keys_are_declared_with_their_canonical_schema() {
        for (kind, spec_kind) in [
            ("AzureIdentity", SpecKind::AzureIdentity),
            ("AzureIdentityBinding", SpecKind::AzureIdentityBinding),
            (
                "AzurePodIdentityException",
                SpecKind::AzurePodIdentityException,
            ),
        ] {
            let schema = schema_json(kind);
            for key in legacy_keys(spec_kind) {
                let mut parent = &schema["properties"]["spec"];
                for name in key.parent {
                    parent = &parent["properties"][*name];
                }
                // Compared without descriptions, and without the legacy keys declared inside
                // the canonical object after the copy was taken.
                let strip = |node: &Value| {
                    let mut node = node.clone();
                    node.as_object_mut().unwrap().remove("description");
                    if let Some(properties) =
                        node.get_mut("properties").and_then(Value::as_object_mut)
                    {
                        properties.retain(|name, _| !LEGACY_KEYS.iter().any(|k| k.legacy == name));
                    }
                    node
                };
                let legacy = &parent["properties"][key.legacy];
                let canonical = &parent["properties"][key.canonical];
                assert!(legacy["type"].is_string(), "{kind} {}", key.legacy);
                assert_eq!(strip(legacy), strip(canonical), "{kind} {}", key.legacy);
            }
        }
        // The legacy object is the canonical one, not the canonical one plus its legacy keys.
        let schema = schema_json("AzureIdentity");
        let spec = &schema["properties"]["spec"]["properties"];
        assert!(spec["clientPassword"]["properties"]["Name"].is_object());
        assert!(spec["ClientPassword"]["properties"].get("Name").is_none());
        assert_eq!(spec["ResourceID"]["maxLength"], RESOURCE_ID_MAX_LENGTH);
    }
}
