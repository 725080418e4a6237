//! Installing podid's CRDs into the test control plane.

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::{Client, discovery};

use crate::{Error, FIELD_MANAGER, wait::try_wait_for};

const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Server-side applies every CRD of `podid_api::crds()` and waits until each is Established and
/// its kind is served. Idempotent, so processes sharing one control plane may all call it.
pub async fn install(client: &Client) -> Result<(), Error> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let crds = podid_api::crds();
    for crd in &crds {
        let name = crd.metadata.name.as_deref().unwrap_or_default();
        api.patch(name, &params, &Patch::Apply(crd)).await?;
    }
    for crd in &crds {
        let name = crd.metadata.name.as_deref().unwrap_or_default();
        try_wait_for(
            &format!("CRD {name} to be Established"),
            READY_TIMEOUT,
            || established(&api, name),
        )
        .await?;
        for version in crd.spec.versions.iter().filter(|v| v.served) {
            let gvk = GroupVersionKind::gvk(&crd.spec.group, &version.name, &crd.spec.names.kind);
            try_wait_for(
                &format!("{}/{} to be served", version.name, crd.spec.names.kind),
                READY_TIMEOUT,
                || async { discovery::pinned_kind(client, &gvk).await.map(drop) },
            )
            .await?;
        }
    }
    Ok(())
}

async fn established(api: &Api<CustomResourceDefinition>, name: &str) -> Result<(), String> {
    let crd = api.get(name).await.map_err(|e| e.to_string())?;
    let conditions = crd.status.and_then(|s| s.conditions).unwrap_or_default();
    match conditions.iter().find(|c| c.type_ == "Established") {
        Some(c) if c.status == "True" => Ok(()),
        _ => Err(format!("conditions {conditions:?}")),
    }
}
