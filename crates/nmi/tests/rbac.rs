//! Least privilege, proven: the ClusterRole each install manifest binds to NMI's ServiceAccount
//! (deploy/infra/deployment-rbac.yaml for standard mode, managed-mode-deployment.yaml for
//! managed mode) grants nothing NMI does without.
//!
//! One short scenario per mode runs NMI as a fresh ServiceAccount bound to a copy of the role.
//! With the role as shipped it must succeed without a single refusal. Then, for every verb on
//! every resource the role grants, it runs again with just that one dropped, and NMI must be
//! refused exactly it: the API server's 403, which names the user, the verb and the resource,
//! in NMI's log (a watch that failed, or a token request answered 503 because the Secret could
//! not be read).

mod support;

use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Secret, SecretReference};
use kube::api::{Api, PostParams};
use podid_api::{
    AssignedIdentityState, AzureIdentity, AzureIdentityBinding, AzureIdentityBindingSpec,
    AzureIdentitySpec, AzurePodIdentityException, AzurePodIdentityExceptionSpec, IdentityType,
};
use podid_emulator::testing::TENANT;
use podid_nmi::state::Mode;
use podid_testkit::{
    CapturedLog, Outcome, Permission, ShippedRbac, TestEnv, unique_name, wait_for,
};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_permission_of_nmis_standard_role_is_needed() {
    every_permission_is_needed(STANDARD_MANIFEST, Mode::Standard).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_permission_of_nmis_managed_role_is_needed() {
    every_permission_is_needed(MANAGED_MANIFEST, Mode::Managed).await;
}

async fn every_permission_is_needed(manifest: &str, mode: Mode) {
    let log = podid_testkit::capture_log("warn");
    let shipped = ShippedRbac::from_manifest(manifest, NMI_SA).expect("NMI's shipped RBAC");
    let what = format!("NMI ({mode:?})");
    podid_testkit::assert_every_permission_needed(&what, &shipped, log, |dropped| {
        let shipped = shipped.clone();
        async move { run(&shipped, mode, dropped.as_ref(), log).await }
    })
    .await;
}

/// Runs the scenario of `mode` as a fresh ServiceAccount bound to the shipped role, less
/// `dropped`. Returns the ServiceAccount's name and how it went: with a permission dropped it
/// ends as soon as NMI is refused it (or the scenario ends, when it was not needed).
async fn run(
    shipped: &ShippedRbac,
    mode: Mode,
    dropped: Option<&Permission>,
    log: CapturedLog,
) -> (String, Outcome) {
    let env = TestEnv::get().await;
    let sa = unique_name("nmi-rbac");
    let rbac = dropped
        .map_or_else(|| shipped.clone(), |p| shipped.clone().without(p))
        .for_service_account(&sa)
        .with_suffix(&format!("-{sa}"));
    rbac.apply(&env.admin(), &[])
        .await
        .expect("the copy applies");
    rbac.wait_granted(&env.admin(), &[], WAIT)
        .await
        .expect("the copy takes effect");
    if let Some(permission) = dropped {
        let allowed = rbac.allows(&env.admin(), permission, None).await;
        assert!(!allowed.expect("a review"), "{permission} is still granted");
    }
    let client = env.as_service_account(rbac.namespace(), &sa);
    let nmi = Nmi::start_as(Some(client), |settings, _| {
        settings.mode = mode;
        // As managed-mode-deployment.yaml runs it.
        settings.force_namespaced = mode == Mode::Managed;
        short_wait(settings);
    })
    .await;
    let refused =
        |permission: &Permission| permission.refused_in(&log.text(), rbac.namespace(), &sa);
    let outcome = tokio::time::timeout(WAIT, async {
        match dropped {
            None => {
                if let Err(failed) = scenario(&nmi, mode).await {
                    panic!("NMI ({mode:?}) failed its scenario with the shipped role: {failed}");
                }
                Outcome::Succeeded
            }
            Some(permission) => {
                let seen = async {
                    while !refused(permission) {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                };
                tokio::select! {
                    ended = scenario(&nmi, mode) => match ended {
                        // The refused call may have been the last or the failing step.
                        _ if refused(permission) => Outcome::Refused,
                        Ok(()) => Outcome::Succeeded,
                        Err(failed) => panic!(
                            "NMI ({mode:?}) without {permission} failed its scenario, but \
                             not by being refused that: {failed}"
                        ),
                    },
                    () = seen => Outcome::Refused,
                }
            }
        }
    })
    .await
    .unwrap_or_else(|_| {
        let text = log.text();
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        panic!(
            "NMI ({mode:?}) neither finished the scenario nor was refused {dropped:?} within \
             {WAIT:?}; the log ends:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )
    });
    nmi.stop().await;
    (sa, outcome)
}

/// Everything NMI reads, each made after its watches listed (so through the watches): a pod
/// with a user-assigned identity and one with a service principal whose secret NMI reads, both
/// bound, and a pod excepted by an AzurePodIdentityException. In standard mode the
/// AzureAssignedIdentities are written as MIC writes them; in managed mode NMI matches the
/// bindings and identities itself.
/// A token answered otherwise is an error, not a panic: the caller looks for the refusal.
async fn scenario(nmi: &Nmi, mode: Mode) -> Result<(), String> {
    tokio::time::timeout(WAIT, nmi.app.state().wait_synced())
        .await
        .map_err(|_| format!("NMI's watches did not list within {WAIT:?}"))?;
    let alpha = nmi.identity("alpha", ALPHA_CLIENT, Some(alpha_id()));
    let sp = service_principal(nmi).await;
    let mut exception = AzurePodIdentityException::new(
        "exception",
        AzurePodIdentityExceptionSpec {
            pod_labels: Some([("excepted".to_owned(), "yes".to_owned())].into()),
        },
    );
    exception.metadata.namespace = Some(nmi.ns().to_owned());
    Api::<AzurePodIdentityException>::namespaced(nmi.client(), nmi.ns())
        .create(&PostParams::default(), &exception)
        .await
        .expect("the exception is created");
    for identity in [&alpha, &sp] {
        let name = identity.metadata.name.clone().expect("a name");
        let mut binding = AzureIdentityBinding::new(
            &name,
            AzureIdentityBindingSpec {
                azure_identity: Some(name.clone()),
                selector: Some(name.clone()),
                ..AzureIdentityBindingSpec::default()
            },
        );
        binding.metadata.namespace = Some(nmi.ns().to_owned());
        Api::<AzureIdentityBinding>::namespaced(nmi.client(), nmi.ns())
            .create(&PostParams::default(), &binding)
            .await
            .expect("the binding is created");
        if mode == Mode::Managed {
            Api::<AzureIdentity>::namespaced(nmi.client(), nmi.ns())
                .create(&PostParams::default(), identity)
                .await
                .expect("the identity is created");
        }
    }
    let app = nmi.app.clone();
    let ns = nmi.ns().to_owned();
    wait_for(
        "NMI sees the exception, bindings and identities",
        WAIT,
        || {
            let state = app.state();
            let seen = !state.exceptions_in(&ns).is_empty()
                && match mode {
                    Mode::Standard => state.is_selected("alpha") && state.is_selected("sp"),
                    Mode::Managed => {
                        state.bindings_in(&ns).len() == 2 && state.identities_in(&ns).len() == 2
                    }
                };
            async move { seen.then_some(()) }
        },
    )
    .await;

    for (identity, client_id) in [(&alpha, ALPHA_CLIENT), (&sp, SP_CLIENT)] {
        let name = identity.metadata.name.clone().expect("a name");
        let pod = nmi.pod(&name, &[("aadpodidbinding", &name)]).await;
        if mode == Mode::Standard {
            nmi.assign(&pod, identity, Some(AssignedIdentityState::Assigned))
                .await;
        }
        let answer = pod.token(VAULT, &format!("&client_id={client_id}")).await;
        if (answer.status, answer.client_id()) != (200, client_id.to_owned()) {
            return Err(format!("{name}: {} {}", answer.status, answer.text));
        }
    }
    let excepted = nmi.pod("excepted", &[("excepted", "yes")]).await;
    let answer = excepted
        .token(VAULT, &format!("&client_id={BETA_CLIENT}"))
        .await;
    if (answer.status, answer.client_id()) != (200, BETA_CLIENT.to_owned()) {
        return Err(format!("excepted: {} {}", answer.status, answer.text));
    }
    Ok(())
}

/// A service principal with a client secret (type 1), and its Secret, which NMI reads.
async fn service_principal(nmi: &Nmi) -> AzureIdentity {
    let mut secret = Secret::default();
    secret.metadata.name = Some("sp-secret".to_owned());
    secret.data = Some(
        [(
            "clientSecret".to_owned(),
            ByteString(SP_SECRET.as_bytes().to_vec()),
        )]
        .into(),
    );
    Api::<Secret>::namespaced(nmi.client(), nmi.ns())
        .create(&PostParams::default(), &secret)
        .await
        .expect("the secret is created");
    let mut identity = AzureIdentity::new(
        "sp",
        AzureIdentitySpec {
            identity_type: Some(IdentityType::ServicePrincipalSecret),
            client_id: Some(SP_CLIENT.into()),
            tenant_id: Some(TENANT.into()),
            client_password: Some(SecretReference {
                name: Some("sp-secret".into()),
                namespace: Some(nmi.ns().into()),
            }),
            ad_endpoint: Some(format!("{}/", nmi.emu.entra_base())),
            ..AzureIdentitySpec::default()
        },
    );
    identity.metadata.namespace = Some(nmi.ns().to_owned());
    identity
}
