//! Warnings: what upstream 1.8 accepted but ignored, or what works in only one mode. The API
//! server stores such objects and returns these messages to `kubectl apply` through a
//! ValidatingAdmissionPolicy with `validationActions: [Warn]` (crate::policy).

use crate::cel::Context;
use crate::kind::SpecKind;
use crate::legacy::{WhenAlone, legacy_keys};
use crate::names::{BEHAVIOR_ANNOTATION, BEHAVIOR_NAMESPACED};
use crate::rules::RESOURCE_ID_SHAPE;

/// One check of a ValidatingAdmissionPolicy: when `expression` is false, `message` is returned
/// as a warning.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    /// CEL expression over `object`; false means warn.
    pub expression: String,
    /// What is ignored or mode-dependent, and what to change.
    pub message: String,
}

fn warning(expression: String, message: impl Into<String>) -> Warning {
    Warning {
        expression,
        message: message.into(),
    }
}

/// The warnings of one kind, legacy keys first.
pub fn warnings_for(kind: SpecKind) -> Vec<Warning> {
    let policy = Context::Policy;
    let legacy = legacy_keys(kind).flat_map(|key| {
        let alone = match key.when_alone {
            WhenAlone::Warn(consequence) => Some(warning(
                key.not_alone(policy),
                key.ignored_message(consequence),
            )),
            WhenAlone::Refuse => None,
        };
        alone
            .into_iter()
            .chain([warning(key.not_repeated(policy), key.repeated_message())])
    });
    let spec = match kind {
        SpecKind::AzureIdentity => identity_warnings(),
        SpecKind::AzureIdentityBinding => binding_warnings(),
        SpecKind::AzurePodIdentityException => exception_warnings(),
    };
    legacy.chain(spec).collect()
}

/// Holds when `condition` does not apply or `requirement` is met.
fn unless(condition: &str, requirement: &str) -> String {
    format!("!{condition} || ({requirement})")
}

fn identity_warnings() -> Vec<Warning> {
    let policy = Context::Policy;
    let managed = policy.is_managed_identity();
    // Keys only a service principal reads; `clientPassword: {}` is what upstream's own type
    // upgrade wrote into every type-0 identity, so only a non-empty one is flagged.
    let service_principal_keys: [(&str, String); 4] = [
        ("tenantID", policy.non_empty_string(&["tenantID"])),
        (
            "clientPassword",
            format!(
                "{} || {}",
                policy.non_empty_string(&["clientPassword", "name"]),
                policy.non_empty_string(&["clientPassword", "namespace"])
            ),
        ),
        (
            "auxiliaryTenantIDs",
            policy.non_empty_collection(&["auxiliaryTenantIDs"]),
        ),
        ("adEndpoint", policy.non_empty_string(&["adEndpoint"])),
    ];
    let ignored_by_managed = service_principal_keys.into_iter().map(|(key, set)| {
        warning(
            unless(&managed, &format!("!({set})")),
            format!(
                "spec.{key} is ignored: only a service principal (type 1 or 2) uses it, and this \
                 is a user-assigned managed identity (type 0, also when type is omitted); set \
                 spec.type if it is a service principal, else remove spec.{key}"
            ),
        )
    });
    let annotation_key = BEHAVIOR_ANNOTATION.to_ascii_lowercase();
    [
        warning(
            unless(&managed, &policy.non_empty_string(&["resourceID"])),
            format!(
                "spec.resourceID is empty: a user-assigned managed identity without it works only \
                 in managed mode, since standard mode cannot assign it to a node; set it to \
                 {RESOURCE_ID_SHAPE}"
            ),
        ),
        warning(
            unless(&managed, &policy.non_empty_string(&["clientID"])),
            "spec.clientID is empty: token requests then reach IMDS without a client ID, so the \
             node's system-assigned identity (or its only user-assigned one) answers, not \
             necessarily this identity; set it to the identity's client ID",
        ),
        warning(
            unless(
                &policy.is_type(2),
                &format!(
                    "!({})",
                    policy.non_empty_collection(&["auxiliaryTenantIDs"])
                ),
            ),
            "spec.auxiliaryTenantIDs is ignored for a service principal with a certificate \
             (type 2): only type 1 (client secret) gets tokens from auxiliary tenants",
        ),
        warning(
            format!("!({})", policy.non_empty_string(&["adResourceID"])),
            "spec.adResourceID is ignored, as it was by upstream: remove it",
        ),
        // Only the exact key and value make an identity namespaced; a near miss is a silent
        // cluster-wide identity.
        warning(
            format!(
                "!has(object.metadata.annotations) || object.metadata.annotations.all(k, \
                 k.lowerAscii() != '{annotation_key}' || (k == '{BEHAVIOR_ANNOTATION}' && \
                 object.metadata.annotations[k] == '{BEHAVIOR_NAMESPACED}'))"
            ),
            format!(
                "metadata.annotations: only {BEHAVIOR_ANNOTATION}: {BEHAVIOR_NAMESPACED} (exact \
                 key and value) makes an identity namespaced; this one is not, so pods of any \
                 namespace may use it unless forceNamespaced is on"
            ),
        ),
    ]
    .into_iter()
    .chain(ignored_by_managed)
    .collect()
}

fn binding_warnings() -> Vec<Warning> {
    let policy = Context::Policy;
    vec![
        warning(
            policy.non_empty_string(&["azureIdentity"]),
            "spec.azureIdentity is empty: the binding names no AzureIdentity and gives no pod an \
             identity; set it to the name of an AzureIdentity in the binding's namespace",
        ),
        warning(
            policy.non_empty_string(&["selector"]),
            "spec.selector is empty: in standard mode the binding matches no pod, in managed mode \
             every pod of its namespace without an aadpodidbinding label; set it to the value of \
             that label on the pods that use the identity",
        ),
        warning(
            format!("!{}", policy.has(&["weight"])),
            "spec.weight is ignored: upstream documented it as a tie-breaker but never used it; \
             remove it",
        ),
    ]
}

fn exception_warnings() -> Vec<Warning> {
    vec![warning(
        Context::Policy.non_empty_collection(&["podLabels"]),
        "spec.podLabels is empty: the exception matches no pod; list the labels of the pods \
         that should reach IMDS directly",
    )]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::legacy::LEGACY_KEYS;

    /// The API server's warning budget is 4096 characters per response; past it every warning is
    /// cut to 256. Policy names and the fixed prefix take about 110 of those.
    const MAX_MESSAGE_LENGTH: usize = 320;

    #[test]
    fn every_legacy_key_warns_when_repeated_and_unneeded_ones_when_alone() {
        for kind in SpecKind::ALL {
            let warnings = warnings_for(kind);
            for key in LEGACY_KEYS.iter().filter(|key| key.kind == kind) {
                let repeated = warnings
                    .iter()
                    .find(|w| w.message == key.repeated_message())
                    .unwrap();
                assert_eq!(repeated.expression, key.not_repeated(Context::Policy));
                let alone = warnings.iter().find(|w| {
                    w.message.starts_with(&key.shown_legacy())
                        && w.message.contains(" is ignored, ")
                });
                match key.when_alone {
                    WhenAlone::Warn(consequence) => {
                        let alone = alone.unwrap();
                        assert_eq!(alone.message, key.ignored_message(consequence));
                        assert_eq!(alone.expression, key.not_alone(Context::Policy));
                    }
                    WhenAlone::Refuse => assert!(alone.is_none(), "{key:?}"),
                }
            }
        }
    }

    #[test]
    fn messages_name_the_key_and_fit_the_warning_budget() {
        for kind in SpecKind::ALL {
            for warning in warnings_for(kind) {
                assert!(
                    warning.message.starts_with("spec.")
                        || warning.message.starts_with("metadata.annotations"),
                    "{warning:?}"
                );
                assert!(
                    warning.message.chars().count() <= MAX_MESSAGE_LENGTH,
                    "{} characters: {}",
                    warning.message.chars().count(),
                    warning.message
                );
            }
        }
    }

    #[test]
    fn messages_are_unique_within_a_kind() {
        for kind in SpecKind::ALL {
            let warnings = warnings_for(kind);
            for (i, warning) in warnings.iter().enumerate() {
                assert!(
                    !warnings[i + 1..]
                        .iter()
                        .any(|w| w.message == warning.message),
                    "{warning:?} twice"
                );
            }
        }
    }

    #[test]
    fn expressions_read_the_untyped_object() {
        for kind in SpecKind::ALL {
            for warning in warnings_for(kind) {
                assert!(!warning.expression.contains("self."), "{warning:?}");
                assert!(!warning.expression.contains("__namespace__"), "{warning:?}");
                assert!(warning.expression.contains("object."), "{warning:?}");
            }
        }
    }

    #[test]
    fn service_principal_keys_on_a_managed_identity_ignore_an_empty_client_password() {
        let warnings = warnings_for(SpecKind::AzureIdentity);
        let client_password = warnings
            .iter()
            .find(|w| w.message.starts_with("spec.clientPassword is ignored"))
            .unwrap();
        assert_eq!(
            client_password.expression,
            "!(!has(object.spec.type) || object.spec.type == 0) || (!(has(object.spec.clientPassword) \
             && has(object.spec.clientPassword.name) && object.spec.clientPassword.name != '' || \
             has(object.spec.clientPassword) && 'namespace' in object.spec.clientPassword && \
             object.spec.clientPassword['namespace'] != ''))"
        );
    }

    #[test]
    fn behavior_annotation_warning_compares_the_key_ignoring_case() {
        let warnings = warnings_for(SpecKind::AzureIdentity);
        let annotation = warnings
            .iter()
            .find(|w| w.message.starts_with("metadata.annotations"))
            .unwrap();
        assert!(
            annotation
                .expression
                .contains("k.lowerAscii() != 'aadpodidentity.k8s.io/behavior'")
        );
        assert!(
            annotation
                .expression
                .contains("k == 'aadpodidentity.k8s.io/Behavior' && object.metadata.annotations[k] == 'namespaced'")
        );
    }
}
