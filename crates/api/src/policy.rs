//! The ValidatingAdmissionPolicies (GA since Kubernetes 1.30) that return crate::warnings to
//! clients: one policy per checked kind, bound with `validationActions: [Warn]`, so they never
//! refuse anything.

use k8s_openapi::api::admissionregistration::v1::{
    MatchResources, NamedRuleWithOperations, ValidatingAdmissionPolicy,
    ValidatingAdmissionPolicyBinding, ValidatingAdmissionPolicyBindingSpec,
    ValidatingAdmissionPolicySpec, Validation,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::kind::SpecKind;
use crate::names::{GROUP, VERSION};
use crate::warnings::{Warning, warnings_for};

/// A policy and the binding that makes it effective.
#[derive(Clone, Debug, PartialEq)]
pub struct WarningPolicy {
    /// The kind whose objects it checks.
    pub kind: SpecKind,
    /// `podid-<kind in lowercase>`; the warning text names it.
    pub policy: ValidatingAdmissionPolicy,
    /// Same name, `validationActions: [Warn]`.
    pub binding: ValidatingAdmissionPolicyBinding,
}

/// The warning policies of every checked kind, in `SpecKind::ALL` order.
pub fn warning_policies() -> Vec<WarningPolicy> {
    SpecKind::ALL.into_iter().map(warning_policy).collect()
}

fn warning_policy(kind: SpecKind) -> WarningPolicy {
    let name = format!("podid-{}", kind.kind().to_ascii_lowercase());
    let metadata = ObjectMeta {
        name: Some(name.clone()),
        ..ObjectMeta::default()
    };
    let policy = ValidatingAdmissionPolicy {
        metadata: metadata.clone(),
        spec: Some(ValidatingAdmissionPolicySpec {
            // With Fail, an error outside the expressions (matching, configuration) would refuse
            // the request whatever the binding's actions say; a warning must never refuse.
            failure_policy: Some("Ignore".to_owned()),
            match_constraints: Some(MatchResources {
                resource_rules: Some(vec![NamedRuleWithOperations {
                    api_groups: Some(vec![GROUP.to_owned()]),
                    api_versions: Some(vec![VERSION.to_owned()]),
                    operations: Some(vec!["CREATE".to_owned(), "UPDATE".to_owned()]),
                    resources: Some(vec![kind.plural()]),
                    ..NamedRuleWithOperations::default()
                }]),
                ..MatchResources::default()
            }),
            validations: Some(warnings_for(kind).into_iter().map(validation).collect()),
            ..ValidatingAdmissionPolicySpec::default()
        }),
        status: None,
    };
    let binding = ValidatingAdmissionPolicyBinding {
        metadata,
        spec: ValidatingAdmissionPolicyBindingSpec {
            policy_name: name,
            validation_actions: vec!["Warn".to_owned()],
            ..ValidatingAdmissionPolicyBindingSpec::default()
        },
    };
    WarningPolicy {
        kind,
        policy,
        binding,
    }
}

fn validation(warning: Warning) -> Validation {
    Validation {
        expression: warning.expression,
        message: Some(warning.message),
        ..Validation::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_policy_per_kind_bound_to_warn_only() {
        let policies = warning_policies();
        assert_eq!(
            policies.iter().map(|p| p.kind).collect::<Vec<_>>(),
            SpecKind::ALL
        );
        for WarningPolicy {
            kind,
            policy,
            binding,
        } in &policies
        {
            let name = policy.metadata.name.clone().unwrap();
            assert_eq!(name, format!("podid-{}", kind.kind().to_ascii_lowercase()));
            assert_eq!(binding.metadata.name.as_ref(), Some(&name));
            let binding = &binding.spec;
            assert_eq!(binding.policy_name, name);
            assert_eq!(binding.validation_actions, ["Warn"]);
            assert!(binding.match_resources.is_none() && binding.param_ref.is_none());

            let spec = policy.spec.as_ref().unwrap();
            assert_eq!(spec.failure_policy.as_deref(), Some("Ignore"));
            assert!(spec.param_kind.is_none());
            let rules = spec
                .match_constraints
                .as_ref()
                .and_then(|m| m.resource_rules.clone())
                .unwrap();
            assert_eq!(
                rules,
                [NamedRuleWithOperations {
                    api_groups: Some(vec!["aadpodidentity.k8s.io".to_owned()]),
                    api_versions: Some(vec!["v1".to_owned()]),
                    operations: Some(vec!["CREATE".to_owned(), "UPDATE".to_owned()]),
                    resources: Some(vec![kind.plural()]),
                    ..NamedRuleWithOperations::default()
                }]
            );
        }
    }

    #[test]
    fn validations_are_the_warnings_in_order() {
        for WarningPolicy { kind, policy, .. } in warning_policies() {
            let validations = policy.spec.unwrap().validations.unwrap();
            let expected: Vec<Validation> =
                warnings_for(kind).into_iter().map(validation).collect();
            assert_eq!(validations, expected);
            for validation in validations {
                assert!(validation.message_expression.is_none() && validation.reason.is_none());
            }
        }
    }
}
