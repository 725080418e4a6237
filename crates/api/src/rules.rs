//! Refusals: the CEL validation rules (`x-kubernetes-validations`) on each CRD's spec. They refuse
//! only what could never work on upstream 1.8 (which accepted everything and failed at run
//! time); what upstream accepted and used, even if inert or only in one mode, is left to the
//! warnings (crate::warnings). Each message names the key and the fix.

use crate::cel::Context;
use crate::identity::RESOURCE_ID_PATTERN;
use crate::kind::SpecKind;
use crate::legacy::{WhenAlone, legacy_keys};

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

/// One `x-kubernetes-validations` entry on a spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// CEL expression that must hold; `self` is the spec.
    pub rule: String,
    /// Error message: what is wrong and how to fix it.
    pub message: String,
    /// Field the error is reported on, relative to the spec (`.resourceID`).
    pub field_path: String,
    /// How the error reads.
    pub reason: Reason,
}

fn rule(rule: String, field: &[&str], reason: Reason, message: impl Into<String>) -> Rule {
    Rule {
        rule,
        message: message.into(),
        field_path: format!(".{}", field.join(".")),
        reason,
    }
}

/// The shape of a user-assigned managed identity's ARM ID, as messages show it.
pub const RESOURCE_ID_SHAPE: &str = "/subscriptions/<subscription-id>/resourcegroups/<resource-group>/providers/Microsoft.ManagedIdentity/userAssignedIdentities/<name>";

/// Longest accepted `spec.resourceID`; bounds the CEL cost of the pattern match (real ARM IDs are
/// under 400 characters).
pub const RESOURCE_ID_MAX_LENGTH: i64 = 1024;

/// Most auxiliary tenants a type-1 identity may list: go-autorest refuses more ("must specify one
/// to three auxiliary tenants"), so upstream failed every token request of such an identity.
pub const MAX_AUXILIARY_TENANTS: usize = 3;

/// The refusal rules of one kind's spec, legacy keys first.
pub fn rules_for(kind: SpecKind) -> Vec<Rule> {
    let legacy = legacy_keys(kind).flat_map(|key| {
        let alone = (key.when_alone == WhenAlone::Refuse).then(|| {
            rule(
                key.not_alone(Context::Crd),
                &key.legacy_path(),
                Reason::Forbidden,
                key.alone_message(),
            )
        });
        let conflict = rule(
            key.not_conflicting(Context::Crd),
            &key.legacy_path(),
            Reason::Forbidden,
            key.conflict_message(),
        );
        alone.into_iter().chain([conflict])
    });
    let spec = match kind {
        SpecKind::AzureIdentity => identity_rules(),
        SpecKind::AzureIdentityBinding | SpecKind::AzurePodIdentityException => Vec::new(),
    };
    legacy.chain(spec).collect()
}

fn identity_rules() -> Vec<Rule> {
    use Reason::{Invalid, Required};
    let crd = Context::Crd;
    let service_principal = crd.is_service_principal();
    let required_for_service_principal = |path: &[&str], message: &str| {
        rule(
            format!("!{service_principal} || ({})", crd.non_empty_string(path)),
            path,
            Required,
            message,
        )
    };
    vec![
        rule(
            format!(
                "!{} || {} in [0, 1, 2]",
                crd.has(&["type"]),
                crd.field(&["type"])
            ),
            &["type"],
            Invalid,
            "spec.type must be 0 (user-assigned managed identity), 1 (service principal with a \
             client secret) or 2 (service principal with a PKCS#12 certificate); omit it for 0",
        ),
        rule(
            format!(
                "!{managed} || !({present}) || {field}.matches('{RESOURCE_ID_PATTERN}')",
                managed = crd.is_managed_identity(),
                present = crd.non_empty_string(&["resourceID"]),
                field = crd.field(&["resourceID"]),
            ),
            &["resourceID"],
            Invalid,
            format!(
                "spec.resourceID must be the ARM ID of a user-assigned managed identity, \
                 {RESOURCE_ID_SHAPE} (any letter case): copy it from `az identity show --query \
                 id`, or omit it in managed mode"
            ),
        ),
        required_for_service_principal(
            &["clientID"],
            "spec.clientID is required for a service principal (type 1 or 2): set it to the \
             application (client) ID of its app registration",
        ),
        required_for_service_principal(
            &["tenantID"],
            "spec.tenantID is required for a service principal (type 1 or 2): set it to the ID \
             of the Entra ID tenant of the app registration",
        ),
        required_for_service_principal(
            &["clientPassword", "name"],
            "spec.clientPassword.name is required for a service principal (type 1 or 2): set it \
             to the name of the Secret holding the client secret (type 1, key clientSecret) or \
             the certificate (type 2, keys certificate and password)",
        ),
        required_for_service_principal(
            &["clientPassword", "namespace"],
            "spec.clientPassword.namespace is required for a service principal (type 1 or 2): \
             set it to the namespace of that Secret (it does not default to the identity's \
             namespace)",
        ),
        rule(
            format!(
                "!{type_1} || !{present} || size({field}) <= {MAX_AUXILIARY_TENANTS}",
                type_1 = crd.is_type(1),
                present = crd.has(&["auxiliaryTenantIDs"]),
                field = crd.field(&["auxiliaryTenantIDs"]),
            ),
            &["auxiliaryTenantIDs"],
            Invalid,
            format!(
                "spec.auxiliaryTenantIDs lists more than {MAX_AUXILIARY_TENANTS} tenants: a \
                 service principal with a client secret (type 1) can get tokens from at most \
                 {MAX_AUXILIARY_TENANTS} auxiliary tenants, and upstream failed every token \
                 request of such an identity"
            ),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::legacy::LEGACY_KEYS;

    fn find<'a>(rules: &'a [Rule], field_path: &str, message_start: &str) -> &'a Rule {
        rules
            .iter()
            .find(|r| r.field_path == field_path && r.message.starts_with(message_start))
            .unwrap_or_else(|| panic!("no rule on {field_path} saying {message_start:?}"))
    }

    #[test]
    fn each_legacy_key_refuses_a_conflict_and_a_needed_key_also_refuses_being_alone() {
        for kind in SpecKind::ALL {
            let rules = rules_for(kind);
            for key in LEGACY_KEYS.iter().filter(|key| key.kind == kind) {
                let path = format!(".{}", key.legacy_path().join("."));
                let conflict = find(&rules, &path, &key.conflict_message());
                assert_eq!(conflict.rule, key.not_conflicting(Context::Crd));
                assert_eq!(conflict.reason, Reason::Forbidden);
                let alone = rules
                    .iter()
                    .find(|r| r.field_path == path && r.message == key.alone_message());
                match key.when_alone {
                    WhenAlone::Refuse => {
                        assert_eq!(alone.unwrap().rule, key.not_alone(Context::Crd));
                    }
                    WhenAlone::Warn(_) => assert!(alone.is_none(), "{key:?}"),
                }
            }
        }
    }

    #[test]
    fn bindings_and_exceptions_are_refused_only_for_legacy_keys() {
        for kind in [
            SpecKind::AzureIdentityBinding,
            SpecKind::AzurePodIdentityException,
        ] {
            for rule in rules_for(kind) {
                assert!(
                    rule.message.contains("pre-1.6 spelling"),
                    "{kind:?}: {rule:?}"
                );
            }
        }
    }

    #[test]
    fn a_missing_resource_id_or_client_id_of_a_managed_identity_is_not_refused() {
        let rules = rules_for(SpecKind::AzureIdentity);
        for rule in rules.iter().filter(|r| r.reason == Reason::Required) {
            assert!(
                rule.rule
                    .starts_with(&format!("!{} || ", Context::Crd.is_service_principal())),
                "{rule:?} applies to managed identities"
            );
        }
        let resource_id = find(&rules, ".resourceID", "spec.resourceID must be");
        // Absent or empty passes; only a present value is matched against the pattern.
        assert!(
            resource_id
                .rule
                .contains("!(has(self.resourceID) && self.resourceID != '')")
        );
    }

    #[test]
    fn resource_id_rule_uses_the_upstream_pattern_case_insensitively() {
        let rules = rules_for(SpecKind::AzureIdentity);
        let pattern_rule = find(&rules, ".resourceID", "spec.resourceID must be");
        assert!(
            pattern_rule
                .rule
                .contains(&format!("self.resourceID.matches('{RESOURCE_ID_PATTERN}')"))
        );
        assert!(RESOURCE_ID_PATTERN.starts_with("(?i)"));
        assert!(!RESOURCE_ID_PATTERN.contains('\''));
    }

    #[test]
    fn auxiliary_tenants_are_limited_for_type_1_only() {
        let rules = rules_for(SpecKind::AzureIdentity);
        let aux = find(&rules, ".auxiliaryTenantIDs", "spec.auxiliaryTenantIDs");
        assert_eq!(
            aux.rule,
            "!(has(self.type) && self.type == 1) || !has(self.auxiliaryTenantIDs) || \
             size(self.auxiliaryTenantIDs) <= 3"
        );
    }

    #[test]
    fn every_message_starts_with_the_field_it_is_reported_on() {
        for kind in SpecKind::ALL {
            for rule in rules_for(kind) {
                let field = rule.field_path.trim_start_matches('.');
                assert!(
                    rule.message.starts_with(&format!("spec.{field} ")),
                    "{rule:?}"
                );
            }
        }
    }
}
