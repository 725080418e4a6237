//! The four CustomResourceDefinitions: kube's derived CRDs, brought to upstream's shape (names,
//! annotation, subresources, nullability) and given the apply-time validation rules.

use std::collections::BTreeMap;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, CustomResourceSubresources, JSONSchemaProps, JSONSchemaPropsOrArray,
    JSONSchemaPropsOrBool, ValidationRule,
};
use kube::CustomResourceExt;

use crate::rules::{LEGACY_KEYS, RESOURCE_ID_MAX_LENGTH, Rule, RuleScope, SpecKind, rules_for};
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

/// A CRD as a file under `deploy/crds/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrdManifest {
    /// `<plural>.aadpodidentity.k8s.io.yaml`
    pub file_name: String,
    /// The YAML document, with a header saying how it was generated.
    pub yaml: String,
}

const GENERATED_HEADER: &str = "# Generated from crates/api by \
    `K8S_OPENAPI_ENABLED_VERSION=1.36 cargo run -p podid-api --bin crdgen`; do not edit.\n";

/// One manifest per CRD, as committed under `deploy/crds/`.
pub fn crd_manifests() -> Vec<CrdManifest> {
    crds()
        .iter()
        .map(|crd| CrdManifest {
            file_name: format!("{}.yaml", crd.metadata.name.as_deref().unwrap_or_default()),
            yaml: format!("{GENERATED_HEADER}{}", to_yaml(crd)),
        })
        .collect()
}

/// All four CRDs as one multi-document YAML stream, ready for `kubectl apply -f -`.
pub fn crds_yaml() -> String {
    crds()
        .iter()
        .map(to_yaml)
        .map(|doc| format!("---\n{doc}"))
        .collect()
}

fn to_yaml(crd: &CustomResourceDefinition) -> String {
    // A CRD is plain data (strings, maps, lists, numbers); serializing it cannot fail.
    serde_yaml_ng::to_string(crd).expect("a CustomResourceDefinition serializes to YAML")
}

fn finish(
    mut crd: CustomResourceDefinition,
    validated_spec: Option<SpecKind>,
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
        if let Some(kind) = validated_spec
            && let Some(spec) = property_mut(schema, "spec")
        {
            add_validation(spec, kind);
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

/// Declares the legacy keys (so they reach the rules instead of being pruned) and attaches the
/// validation rules to the spec schema and its `clientPassword`.
fn add_validation(spec: &mut JSONSchemaProps, kind: SpecKind) {
    for key in LEGACY_KEYS.iter().filter(|key| key.kind == kind) {
        if let Some(scope) = scope_mut(spec, key.scope) {
            // CEL only sees properties with a type, so the legacy key takes its canonical key's
            // type; an object keeps whatever it holds, since it is rejected anyway.
            let type_ = property_mut(scope, key.canonical).and_then(|c| c.type_.clone());
            let is_object = type_.as_deref() == Some("object");
            scope.properties.get_or_insert_default().insert(
                key.legacy.to_owned(),
                JSONSchemaProps {
                    description: Some(format!(
                        "Rejected: the pre-1.6 spelling of {}. Declared only so that the API \
                         server reports it instead of silently dropping it.",
                        key.canonical
                    )),
                    type_,
                    x_kubernetes_preserve_unknown_fields: is_object.then_some(true),
                    ..Default::default()
                },
            );
        }
    }
    if kind == SpecKind::AzureIdentity
        && let Some(resource_id) = property_mut(spec, "resourceID")
    {
        resource_id.max_length = Some(RESOURCE_ID_MAX_LENGTH);
    }
    for rule in rules_for(kind) {
        if let Some(scope) = scope_mut(spec, rule.scope) {
            scope
                .x_kubernetes_validations
                .get_or_insert_default()
                .push(validation_rule(rule));
        }
    }
}

fn scope_mut(spec: &mut JSONSchemaProps, scope: RuleScope) -> Option<&mut JSONSchemaProps> {
    match scope {
        RuleScope::Spec => Some(spec),
        RuleScope::ClientPassword => property_mut(spec, "clientPassword"),
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
        let yaml = crds_yaml();
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
    fn no_preserve_unknown_fields_outside_rejected_legacy_objects() {
        for kind in KINDS {
            for (path, node) in nodes(kind) {
                if node.get("x-kubernetes-preserve-unknown-fields").is_some() {
                    let name = path.rsplit('.').next().unwrap();
                    assert!(
                        LEGACY_KEYS.iter().any(|key| key.legacy == name),
                        "{kind}{path} keeps unknown fields"
                    );
                }
            }
        }
    }

    fn validations(node: &Value) -> Vec<ValidationRule> {
        node.get("x-kubernetes-validations")
            .map(|rules| serde_json::from_value(rules.clone()).unwrap())
            .unwrap_or_default()
    }

    #[test]
    fn every_rule_is_in_the_schema_with_message_path_and_reason() {
        for (kind, spec_kind) in [
            ("AzureIdentity", SpecKind::AzureIdentity),
            ("AzureIdentityBinding", SpecKind::AzureIdentityBinding),
            (
                "AzurePodIdentityException",
                SpecKind::AzurePodIdentityException,
            ),
        ] {
            let schema = schema_json(kind);
            let spec = &schema["properties"]["spec"];
            let expected = rules_for(spec_kind);
            let mut found = 0;
            for rule in &expected {
                let node = match rule.scope {
                    RuleScope::Spec => spec,
                    RuleScope::ClientPassword => &spec["properties"]["clientPassword"],
                };
                assert!(
                    validations(node).contains(&validation_rule(rule.clone())),
                    "{kind}: {rule:?}"
                );
                found += 1;
            }
            let in_schema =
                validations(spec).len() + validations(&spec["properties"]["clientPassword"]).len();
            assert_eq!(in_schema, found, "{kind} has rules not listed by rules_for");
        }
    }

    #[test]
    fn identity_schema_contains_the_key_cel_rules() {
        let schema = schema_json("AzureIdentity");
        let rules: Vec<String> = validations(&schema["properties"]["spec"])
            .into_iter()
            .map(|rule| rule.rule)
            .collect();
        for expected in [
            "!has(self.ResourceID)",
            "!has(self.type) || self.type in [0, 1, 2]",
            "has(self.clientID) && self.clientID != ''",
        ] {
            assert!(rules.iter().any(|r| r == expected), "{expected}");
        }
        assert!(rules.iter().any(|r| r.contains(
            "self.resourceID.matches('(?i)/subscriptions/(.+?)/resourcegroups/(.+?)/providers/Microsoft.ManagedIdentity/userAssignedIdentities/(.+)')"
        )));
        assert!(
            rules
                .iter()
                .any(|r| r.contains("self.clientPassword.__namespace__ != ''"))
        );
    }

    #[test]
    fn legacy_keys_are_declared_with_their_canonical_type() {
        for (kind, spec_kind) in [
            ("AzureIdentity", SpecKind::AzureIdentity),
            ("AzureIdentityBinding", SpecKind::AzureIdentityBinding),
            (
                "AzurePodIdentityException",
                SpecKind::AzurePodIdentityException,
            ),
        ] {
            let schema = schema_json(kind);
            let spec = &schema["properties"]["spec"];
            for key in LEGACY_KEYS.iter().filter(|key| key.kind == spec_kind) {
                let scope = match key.scope {
                    RuleScope::Spec => spec,
                    RuleScope::ClientPassword => &spec["properties"]["clientPassword"],
                };
                let legacy = &scope["properties"][key.legacy];
                let canonical = &scope["properties"][key.canonical];
                assert!(legacy["type"].is_string(), "{kind} {}", key.legacy);
                assert_eq!(legacy["type"], canonical["type"], "{kind} {}", key.legacy);
                let rule = validations(scope)
                    .into_iter()
                    .find(|rule| rule.field_path.as_deref() == Some(&format!(".{}", key.legacy)))
                    .unwrap();
                assert_eq!(rule.reason.as_deref(), Some(Reason::Forbidden.as_str()));
                assert_eq!(rule.message, Some(key.message()));
            }
        }
    }

    #[test]
    fn yaml_stream_holds_the_four_crds() {
        let parsed: Vec<CustomResourceDefinition> =
            serde_yaml_ng::Deserializer::from_str(&crds_yaml())
                .map(|doc| serde::Deserialize::deserialize(doc).unwrap())
                .collect();
        assert_eq!(parsed, crds());
    }

    #[test]
    fn manifests_are_named_after_the_crds() {
        let names: Vec<String> = crd_manifests().into_iter().map(|m| m.file_name).collect();
        assert_eq!(
            names,
            [
                "azureidentities.aadpodidentity.k8s.io.yaml",
                "azureidentitybindings.aadpodidentity.k8s.io.yaml",
                "azureassignedidentities.aadpodidentity.k8s.io.yaml",
                "azurepodidentityexceptions.aadpodidentity.k8s.io.yaml",
            ]
        );
    }
}
