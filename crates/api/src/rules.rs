//! Apply-time validation: the CEL rules (`x-kubernetes-validations`) the API server runs on
//! create and update. Upstream accepted invalid objects and only logged at run time (or silently
//! dropped misspelt keys); these rules reject them with a message saying what to change.

use crate::identity::RESOURCE_ID_PATTERN;

/// Which kind's spec a rule or legacy key belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SpecKind {
    /// `AzureIdentity.spec`
    AzureIdentity,
    /// `AzureIdentityBinding.spec`
    AzureIdentityBinding,
    /// `AzurePodIdentityException.spec`
    AzurePodIdentityException,
}

impl SpecKind {
    /// What silently stopped working upstream when a key was dropped.
    fn noun(self) -> &'static str {
        match self {
            Self::AzureIdentity => "identity",
            Self::AzureIdentityBinding => "binding",
            Self::AzurePodIdentityException => "exception",
        }
    }
}

/// The object inside a spec that a rule is attached to (CEL's `self`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RuleScope {
    /// The spec itself.
    Spec,
    /// `spec.clientPassword` (AzureIdentity only).
    ClientPassword,
}

impl RuleScope {
    /// JSON path of the scope object from the resource root.
    pub fn path(self) -> &'static str {
        match self {
            Self::Spec => "spec",
            Self::ClientPassword => "spec.clientPassword",
        }
    }
}

/// A key that older releases accepted (their JSON decoding ignored case) but the v1 CRD never
/// declared, so the API server pruned it and the object silently lost the field. Declaring it
/// lets the API server reject it with a message naming the right key instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LegacyKey {
    /// Spec the key appears in.
    pub kind: SpecKind,
    /// Object the key appears in.
    pub scope: RuleScope,
    /// The old spelling.
    pub legacy: &'static str,
    /// The key to use instead.
    pub canonical: &'static str,
}

const fn legacy(
    kind: SpecKind,
    scope: RuleScope,
    legacy: &'static str,
    canonical: &'static str,
) -> LegacyKey {
    LegacyKey {
        kind,
        scope,
        legacy,
        canonical,
    }
}

/// Every rejected legacy spelling: the pre-1.6 capitalised forms the upstream migration docs
/// list, the all-lowercase forms releases up to 1.5 wrote, and capitalised `Name`/`Namespace`
/// inside `clientPassword`. Keys differing from a canonical key only by case rely on the API
/// server accepting such properties side by side; adjust this one table if it does not.
pub const LEGACY_KEYS: &[LegacyKey] = {
    use RuleScope::{ClientPassword, Spec};
    use SpecKind::{AzureIdentity, AzureIdentityBinding, AzurePodIdentityException};
    &[
        legacy(AzureIdentity, Spec, "ResourceID", "resourceID"),
        legacy(AzureIdentity, Spec, "ClientID", "clientID"),
        legacy(AzureIdentity, Spec, "ClientPassword", "clientPassword"),
        legacy(AzureIdentity, Spec, "TenantID", "tenantID"),
        legacy(AzureIdentity, Spec, "resourceid", "resourceID"),
        legacy(AzureIdentity, Spec, "clientid", "clientID"),
        legacy(AzureIdentity, Spec, "clientpassword", "clientPassword"),
        legacy(AzureIdentity, Spec, "tenantid", "tenantID"),
        legacy(AzureIdentity, Spec, "adresourceid", "adResourceID"),
        legacy(AzureIdentity, Spec, "adendpoint", "adEndpoint"),
        legacy(AzureIdentity, ClientPassword, "Name", "name"),
        legacy(AzureIdentity, ClientPassword, "Namespace", "namespace"),
        legacy(AzureIdentityBinding, Spec, "AzureIdentity", "azureIdentity"),
        legacy(AzureIdentityBinding, Spec, "Selector", "selector"),
        legacy(AzureIdentityBinding, Spec, "azureidentity", "azureIdentity"),
        legacy(AzurePodIdentityException, Spec, "PodLabels", "podLabels"),
        legacy(AzurePodIdentityException, Spec, "podlabels", "podLabels"),
    ]
};

impl LegacyKey {
    /// The message the API server returns when an object uses this key.
    pub fn message(&self) -> String {
        let path = self.scope.path();
        format!(
            "{path}.{legacy} is the pre-1.6 spelling of {path}.{canonical}: rename the key to \
             {canonical} (upstream 1.8 silently dropped it and the {noun} never worked)",
            legacy = self.legacy,
            canonical = self.canonical,
            noun = self.kind.noun(),
        )
    }
}

/// Kubernetes' reason for a failed rule, which sets how the error reads (`Required value`,
/// `Forbidden`, `Invalid value`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// `FieldValueRequired`
    Required,
    /// `FieldValueInvalid`
    Invalid,
    /// `FieldValueForbidden`
    Forbidden,
}

impl Reason {
    /// The `reason` value in the CRD.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Required => "FieldValueRequired",
            Self::Invalid => "FieldValueInvalid",
            Self::Forbidden => "FieldValueForbidden",
        }
    }
}

/// One `x-kubernetes-validations` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Object the rule is attached to.
    pub scope: RuleScope,
    /// CEL expression; `self` is the scope object.
    pub rule: String,
    /// Error message: what is wrong and how to fix it.
    pub message: String,
    /// Field the error is reported on, relative to the scope (`.resourceID`).
    pub field_path: String,
    /// How the error reads.
    pub reason: Reason,
}

fn rule(scope: RuleScope, rule: String, field: &str, reason: Reason, message: &str) -> Rule {
    Rule {
        scope,
        rule,
        message: message.to_owned(),
        field_path: format!(".{field}"),
        reason,
    }
}

/// Not a type-0 identity (`type` omitted means 0).
const IS_NOT_MANAGED_IDENTITY: &str = "(has(self.type) && self.type != 0)";
/// A service principal: `type` 1 or 2.
const IS_SERVICE_PRINCIPAL: &str = "(has(self.type) && (self.type == 1 || self.type == 2))";

/// `has(self.<field>) && self.<field> != ''` for a string field.
fn non_empty(field: &str) -> String {
    format!("has(self.{field}) && self.{field} != ''")
}

const RESOURCE_ID_SHAPE: &str = "/subscriptions/<subscription-id>/resourcegroups/<resource-group>/providers/Microsoft.ManagedIdentity/userAssignedIdentities/<name>";

/// Longest accepted `spec.resourceID`; bounds the CEL cost of the pattern match (real ARM IDs are
/// under 300 characters).
pub const RESOURCE_ID_MAX_LENGTH: i64 = 1024;

/// The rules for one kind's spec, legacy keys first.
pub fn rules_for(kind: SpecKind) -> Vec<Rule> {
    let legacy_rules = LEGACY_KEYS
        .iter()
        .filter(|key| key.kind == kind)
        .map(|key| {
            rule(
                key.scope,
                format!("!has(self.{})", key.legacy),
                key.legacy,
                Reason::Forbidden,
                &key.message(),
            )
        });
    let spec_rules = match kind {
        SpecKind::AzureIdentity => identity_rules(),
        SpecKind::AzureIdentityBinding => binding_rules(),
        SpecKind::AzurePodIdentityException => exception_rules(),
    };
    legacy_rules.chain(spec_rules).collect()
}

fn identity_rules() -> Vec<Rule> {
    use Reason::{Invalid, Required};
    use RuleScope::Spec;
    vec![
        rule(
            Spec,
            "!has(self.type) || self.type in [0, 1, 2]".into(),
            "type",
            Invalid,
            "spec.type must be 0 (user-assigned managed identity), 1 (service principal with a \
             client secret) or 2 (service principal with a PKCS#12 certificate); omit it for 0",
        ),
        rule(
            Spec,
            non_empty("clientID"),
            "clientID",
            Required,
            "spec.clientID is required: set it to the client ID of the user-assigned managed \
             identity (type 0) or of the service principal's app registration (types 1 and 2)",
        ),
        rule(
            Spec,
            format!("{IS_NOT_MANAGED_IDENTITY} || ({})", non_empty("resourceID")),
            "resourceID",
            Required,
            &format!(
                "spec.resourceID is required for a user-assigned managed identity (type 0, also \
                 when type is omitted): set it to the identity's ARM ID, {RESOURCE_ID_SHAPE}"
            ),
        ),
        rule(
            Spec,
            format!(
                "{IS_NOT_MANAGED_IDENTITY} || !has(self.resourceID) || self.resourceID == '' || \
                 self.resourceID.matches('{RESOURCE_ID_PATTERN}')"
            ),
            "resourceID",
            Invalid,
            &format!(
                "spec.resourceID must be the ARM ID of a user-assigned managed identity, \
                 {RESOURCE_ID_SHAPE} (any letter case): copy it from `az identity show --query id`"
            ),
        ),
        rule(
            Spec,
            format!("!{IS_SERVICE_PRINCIPAL} || ({})", non_empty("tenantID")),
            "tenantID",
            Required,
            "spec.tenantID is required for a service principal (type 1 or 2): set it to the ID \
             of the Entra ID tenant of the app registration",
        ),
        rule(
            Spec,
            format!(
                "!{IS_SERVICE_PRINCIPAL} || (has(self.clientPassword) && \
                 has(self.clientPassword.name) && self.clientPassword.name != '')"
            ),
            "clientPassword.name",
            Required,
            "spec.clientPassword.name is required for a service principal (type 1 or 2): set it \
             to the name of the Secret holding the client secret (type 1, key clientSecret) or \
             the certificate (type 2, keys certificate and password)",
        ),
        // `namespace` is a CEL reserved word, so Kubernetes exposes the property as
        // `__namespace__`.
        rule(
            Spec,
            format!(
                "!{IS_SERVICE_PRINCIPAL} || (has(self.clientPassword) && \
                 has(self.clientPassword.__namespace__) && \
                 self.clientPassword.__namespace__ != '')"
            ),
            "clientPassword.namespace",
            Required,
            "spec.clientPassword.namespace is required for a service principal (type 1 or 2): \
             set it to the namespace of that Secret (it does not default to the identity's \
             namespace)",
        ),
    ]
}

fn binding_rules() -> Vec<Rule> {
    use Reason::Required;
    use RuleScope::Spec;
    vec![
        rule(
            Spec,
            non_empty("azureIdentity"),
            "azureIdentity",
            Required,
            "spec.azureIdentity is required: set it to the name of an AzureIdentity in the \
             binding's namespace",
        ),
        rule(
            Spec,
            non_empty("selector"),
            "selector",
            Required,
            "spec.selector is required: set it to the value of the aadpodidbinding label of the \
             pods that use the identity (matched exactly, case-sensitive)",
        ),
    ]
}

fn exception_rules() -> Vec<Rule> {
    vec![rule(
        RuleScope::Spec,
        "has(self.podLabels) && size(self.podLabels) > 0".into(),
        "podLabels",
        Reason::Required,
        "spec.podLabels needs at least one label: a pod in the exception's namespace is excepted \
         when any one of them matches its labels (values compared ignoring case)",
    )]
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn legacy_keys_are_unique_and_differ_from_their_canonical_key() {
        let mut seen = HashSet::new();
        for key in LEGACY_KEYS {
            assert!(
                seen.insert((key.kind, key.scope, key.legacy)),
                "{key:?} twice"
            );
            assert_ne!(key.legacy, key.canonical);
            assert!(key.legacy.eq_ignore_ascii_case(key.canonical), "{key:?}");
        }
    }

    #[test]
    fn legacy_message_names_the_right_key() {
        let resource_id = LEGACY_KEYS
            .iter()
            .find(|key| key.legacy == "ResourceID")
            .unwrap();
        assert_eq!(
            resource_id.message(),
            "spec.ResourceID is the pre-1.6 spelling of spec.resourceID: rename the key to \
             resourceID (upstream 1.8 silently dropped it and the identity never worked)"
        );
        let name = LEGACY_KEYS.iter().find(|key| key.legacy == "Name").unwrap();
        assert_eq!(
            name.message(),
            "spec.clientPassword.Name is the pre-1.6 spelling of spec.clientPassword.name: rename \
             the key to name (upstream 1.8 silently dropped it and the identity never worked)"
        );
    }

    #[test]
    fn every_legacy_key_gets_a_forbidding_rule() {
        for kind in [
            SpecKind::AzureIdentity,
            SpecKind::AzureIdentityBinding,
            SpecKind::AzurePodIdentityException,
        ] {
            let rules = rules_for(kind);
            for key in LEGACY_KEYS.iter().filter(|key| key.kind == kind) {
                let expected = format!("!has(self.{})", key.legacy);
                let found = rules.iter().find(|r| r.rule == expected).unwrap();
                assert_eq!(found.scope, key.scope);
                assert_eq!(found.reason, Reason::Forbidden);
                assert_eq!(found.field_path, format!(".{}", key.legacy));
            }
        }
    }

    #[test]
    fn resource_id_rule_uses_the_upstream_pattern_case_insensitively() {
        let rules = rules_for(SpecKind::AzureIdentity);
        let pattern_rule = rules.iter().find(|r| r.rule.contains(".matches(")).unwrap();
        assert!(
            pattern_rule
                .rule
                .contains(&format!("'{RESOURCE_ID_PATTERN}'"))
        );
        assert!(RESOURCE_ID_PATTERN.starts_with("(?i)"));
        assert!(!RESOURCE_ID_PATTERN.contains('\''));
    }

    #[test]
    fn every_message_names_a_spec_field() {
        for kind in [
            SpecKind::AzureIdentity,
            SpecKind::AzureIdentityBinding,
            SpecKind::AzurePodIdentityException,
        ] {
            for rule in rules_for(kind) {
                let field = rule.field_path.trim_start_matches('.');
                assert!(
                    rule.message
                        .starts_with(&format!("{}.{field} ", rule.scope.path())),
                    "{rule:?}"
                );
            }
        }
    }
}
