//! Installing podid's warning policies (ValidatingAdmissionPolicies and their bindings) and
//! waiting until the API server applies them: a policy takes a moment to reach the admission
//! plugin, and a test that expects a warning must not race it.
//!
//! A control plane may outlive a test run (`scripts/control-plane up`), and an edited policy
//! would then keep working in its old form for a moment under the same name. So the test kit
//! names each policy after its content (`podid-azureidentity-<hash>`), deletes the podid
//! policies of other content, and waits until only the current ones answer.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
};
use kube::{Client, ResourceExt};
use podid_api::names::{API_VERSION, GROUP, VERSION};
use podid_api::{SpecKind, WarningPolicy};
use serde_json::json;

use crate::warnings::create_strict;
use crate::{Error, FIELD_MANAGER, wait::try_wait_for};

const EFFECTIVE_TIMEOUT: Duration = Duration::from_secs(60);

/// Namespace of the dry-run probes; it always exists and nothing is stored in it.
const PROBE_NAMESPACE: &str = "default";

/// Prefix of every policy and binding name podid ships.
const NAME_PREFIX: &str = "podid-";

/// Installs every policy of `podid_api::warning_policies()` under its content name, removes
/// podid policies of other content, and waits until each kind warns from its current policy
/// alone. Idempotent, so processes of one checkout sharing a control plane may all call it.
pub async fn install(client: &Client) -> Result<(), Error> {
    let policies: Api<ValidatingAdmissionPolicy> = Api::all(client.clone());
    let bindings: Api<ValidatingAdmissionPolicyBinding> = Api::all(client.clone());
    let current: Vec<WarningPolicy> = podid_api::warning_policies()
        .into_iter()
        .map(named_after_content)
        .collect();
    let names: Vec<String> = current.iter().map(|p| p.policy.name_any()).collect();

    for stale in bindings.list(&ListParams::default()).await?.items {
        let name = stale.name_any();
        if name.starts_with(NAME_PREFIX) && !names.contains(&name) {
            bindings.delete(&name, &DeleteParams::default()).await?;
        }
    }
    for stale in policies.list(&ListParams::default()).await?.items {
        let name = stale.name_any();
        if name.starts_with(NAME_PREFIX) && !names.contains(&name) {
            policies.delete(&name, &DeleteParams::default()).await?;
        }
    }

    let params = PatchParams::apply(FIELD_MANAGER).force();
    for WarningPolicy {
        policy, binding, ..
    } in &current
    {
        policies
            .patch(&policy.name_any(), &params, &Patch::Apply(policy))
            .await?;
        bindings
            .patch(&binding.name_any(), &params, &Patch::Apply(binding))
            .await?;
    }
    for policy in &current {
        let name = policy.policy.name_any();
        try_wait_for(
            &format!("ValidatingAdmissionPolicy {name} alone to warn"),
            EFFECTIVE_TIMEOUT,
            || probe(client, policy.kind, &name),
        )
        .await?;
    }
    Ok(())
}

/// `policy` with its policy and binding renamed `<name>-<hash of the policy>`.
fn named_after_content(mut policy: WarningPolicy) -> WarningPolicy {
    let mut hasher = DefaultHasher::new();
    serde_json::to_string(&policy.policy)
        .unwrap_or_default()
        .hash(&mut hasher);
    let name = format!("{}-{:016x}", policy.policy.name_any(), hasher.finish());
    policy.policy.metadata.name = Some(name.clone());
    policy.binding.metadata.name = Some(name.clone());
    policy.binding.spec.policy_name = name;
    policy
}

/// The resource of a checked kind.
fn api_resource(kind: SpecKind) -> ApiResource {
    ApiResource {
        group: GROUP.to_owned(),
        version: VERSION.to_owned(),
        api_version: API_VERSION.to_owned(),
        kind: kind.kind(),
        plural: kind.plural(),
    }
}

/// A dry-run create of an object with an empty spec, which warns for every checked kind; `Ok`
/// once a warning comes from `policy` and none from another podid policy.
async fn probe(client: &Client, kind: SpecKind, policy: &str) -> Result<(), String> {
    let resource = api_resource(kind);
    let object: DynamicObject = serde_json::from_value(json!({
        "apiVersion": resource.api_version,
        "kind": resource.kind,
        "metadata": {"name": "podid-testkit-warning-probe"},
        "spec": {},
    }))
    .map_err(|e| e.to_string())?;
    let params = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let written = create_strict(client, &resource, PROBE_NAMESPACE, &params, &object)
        .await
        .map_err(|e| e.to_string())?;
    let current_policy = format!("ValidatingAdmissionPolicy '{policy}'");
    let any_podid_policy = format!("ValidatingAdmissionPolicy '{NAME_PREFIX}");
    let current = written.warnings.iter().any(|w| w.contains(&current_policy));
    let stale = written
        .warnings
        .iter()
        .any(|w| w.contains(&any_podid_policy) && !w.contains(&current_policy));
    if current && !stale {
        Ok(())
    } else {
        Err(format!("warnings {:?}", written.warnings))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_names_keep_the_shipped_name_and_change_with_the_content() {
        let shipped = podid_api::warning_policies().remove(0);
        let named = named_after_content(shipped.clone());
        let name = named.policy.name_any();
        assert!(
            name.starts_with(&format!("{}-", shipped.policy.name_any())),
            "{name}"
        );
        assert_eq!(named.binding.name_any(), name);
        assert_eq!(named.binding.spec.policy_name, name);
        assert_eq!(named_after_content(shipped.clone()).policy.name_any(), name);

        let mut edited = shipped;
        if let Some(spec) = edited.policy.spec.as_mut() {
            spec.failure_policy = Some("Fail".to_owned());
        }
        assert_ne!(named_after_content(edited).policy.name_any(), name);
    }
}
