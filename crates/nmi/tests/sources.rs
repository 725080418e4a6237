//! Service principals (E27), exceptions (E12), managed mode, the host listener, the proxy and
//! blocking (E14), error paths, the probe and metrics (E17).

mod support;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Pod, Secret, SecretReference};
use kube::api::{Api, Patch, PatchParams, PostParams};
use podid_api::{
    AssignedIdentityState, AzureIdentity, AzureIdentityBinding, AzureIdentityBindingSpec,
    AzureIdentitySpec, AzurePodIdentityException, AzurePodIdentityExceptionSpec, IdentityType,
};
use podid_emulator::testing::{OTHER_TENANT, Surface, TENANT};
use podid_nmi::state::Mode;
use support::*;

async fn secret(nmi: &Nmi, name: &str, data: &[(&str, &[u8])]) {
    let mut secret = Secret::default();
    secret.metadata.name = Some(name.to_owned());
    secret.data = Some(
        data.iter()
            .map(|(k, v)| ((*k).to_owned(), ByteString(v.to_vec())))
            .collect(),
    );
    Api::<Secret>::namespaced(nmi.client(), nmi.ns())
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
}

fn service_principal(
    nmi: &Nmi,
    name: &str,
    kind: i64,
    secret: &str,
    aux: &[&str],
) -> AzureIdentity {
    let mut identity = AzureIdentity::new(
        name,
        AzureIdentitySpec {
            identity_type: Some(IdentityType::from(kind)),
            client_id: Some(SP_CLIENT.into()),
            tenant_id: Some(TENANT.into()),
            client_password: Some(SecretReference {
                name: Some(secret.into()),
                namespace: Some(nmi.ns().into()),
            }),
            auxiliary_tenant_ids: (!aux.is_empty())
                .then(|| aux.iter().map(|t| (*t).to_owned()).collect()),
            ad_endpoint: Some(format!("{}/", nmi.emu.entra_base())),
            ..AzureIdentitySpec::default()
        },
    );
    identity.metadata.namespace = Some(nmi.ns().to_owned());
    identity
}

#[tokio::test]
async fn service_principals_get_tokens_with_a_secret_or_a_certificate() {
    let nmi = Nmi::start().await;
    secret(&nmi, "sp-secret", &[("clientSecret", SP_SECRET.as_bytes())]).await;
    secret(
        &nmi,
        "sp-cert",
        &[("certificate", P12), ("password", P12_PASSWORD.as_bytes())],
    )
    .await;
    secret(
        &nmi,
        "sp-wrong-password",
        &[("certificate", P12), ("password", b"nope")],
    )
    .await;
    secret(&nmi, "sp-bad-pfx", &[("certificate", b"not a pfx")]).await;

    let cases: [(&str, i64, &str, &[&str], u16); 6] = [
        ("secret", 1, "sp-secret", &[], 200),
        ("multi-tenant", 1, "sp-secret", &[OTHER_TENANT], 200),
        ("certificate", 2, "sp-cert", &[], 200),
        ("wrong-password", 2, "sp-wrong-password", &[], 403),
        ("bad-pfx", 2, "sp-bad-pfx", &[], 403),
        ("missing-secret", 1, "no-such-secret", &[], 403),
    ];
    for (name, kind, secret_name, aux, status) in cases {
        let pod = nmi
            .pod(&format!("sp-{name}"), &[("aadpodidbinding", name)])
            .await;
        let identity = service_principal(&nmi, name, kind, secret_name, aux);
        nmi.assign(&pod, &identity, Some(AssignedIdentityState::Assigned))
            .await;
        let answer = pod.token(VAULT, &format!("&client_id={SP_CLIENT}")).await;
        assert_eq!(answer.status, status, "{name}: {}", answer.text);
        assert!(!answer.text.contains(SP_SECRET), "{name}");
        if status != 200 {
            assert_eq!(answer.error(), "forbidden", "{name}");
            continue;
        }
        let body = answer.json();
        if aux.is_empty() {
            assert_eq!(body["client_id"], SP_CLIENT, "{name}");
            assert_eq!(body["resource"], VAULT, "{name}");
        } else {
            let tokens = body.as_array().expect("an array with auxiliary tenants");
            assert_eq!(tokens.len(), 2);
            let tenants: Vec<String> = tokens
                .iter()
                .map(|t| {
                    let claims =
                        podid_emulator::testing::jwt_claims(t["access_token"].as_str().unwrap());
                    claims["tid"].as_str().unwrap_or_default().to_owned()
                })
                .collect();
            assert_eq!(tenants, [TENANT, OTHER_TENANT]);
        }
    }
    nmi.stop().await;
}

#[tokio::test]
async fn excepted_pods_and_the_controller_get_exactly_what_they_ask_from_imds() {
    // E12: no identity or binding, an exception in the pod's namespace.
    let nmi = Nmi::start_with(|s| {
        short_wait(s);
        s.mic_namespace = "placeholder".into();
    })
    .await;
    let mut exception = AzurePodIdentityException::new(
        "identity-exception",
        AzurePodIdentityExceptionSpec {
            pod_labels: Some([("thispod".to_owned(), "shouldexcept".to_owned())].into()),
        },
    );
    exception.metadata.namespace = Some(nmi.ns().to_owned());
    Api::<AzurePodIdentityException>::namespaced(nmi.client(), nmi.ns())
        .create(&PostParams::default(), &exception)
        .await
        .unwrap();
    let excepted = nmi
        .pod(
            "excepted",
            &[("aadpodidbinding", ""), ("thispod", "ShouldExcept")],
        )
        .await;
    let app = nmi.app.clone();
    let ns = nmi.ns().to_owned();
    podid_testkit::wait_for(
        "NMI sees the exception",
        std::time::Duration::from_secs(30),
        || {
            let (app, ns) = (app.clone(), ns.clone());
            async move { (!app.state().exceptions_in(&ns).is_empty()).then_some(()) }
        },
    )
    .await;
    let by_client = excepted
        .token(VAULT, &format!("&client_id={BETA_CLIENT}"))
        .await;
    assert_eq!(by_client.status, 200, "{}", by_client.text);
    assert_eq!(by_client.client_id(), BETA_CLIENT);
    let system = excepted.token(VAULT, "").await;
    assert_eq!(system.status, 200, "{}", system.text);
    let queries: Vec<String> = nmi
        .emu
        .journal(Some(Surface::Imds))
        .await
        .iter()
        .filter_map(|e| e["query"].as_str().map(str::to_owned))
        .collect();
    assert!(
        queries
            .iter()
            .any(|q| q.contains(&format!("client_id={BETA_CLIENT}"))),
        "{queries:?}"
    );
    assert!(
        queries.iter().any(|q| !q.contains("client_id")),
        "{queries:?}"
    );

    // A pod without the label is not excepted: it has no identity.
    let plain = nmi.pod("plain", &[("thispod", "no")]).await;
    assert_eq!(plain.token(VAULT, "").await.status, 400);
    nmi.stop().await;
}

#[tokio::test]
async fn the_controller_is_excepted_by_namespace_and_replica_set() {
    // --MICNamespace is this test's namespace; `mic-…` is excepted, `microservice-…` is not.
    let nmi = Nmi::start_in(|s, ns| {
        short_wait(s);
        s.mic_namespace = ns.to_uppercase();
    })
    .await;
    let mic = nmi
        .pod_with("mic-5d4f-x", &[], "Running", |p| {
            owned_by_replica_set(p, "mic-5d4f")
        })
        .await;
    let micro = nmi
        .pod_with("microservice-1", &[], "Running", |p| {
            owned_by_replica_set(p, "microservice-7c8")
        })
        .await;
    let controller = mic.token(VAULT, &format!("&client_id={BETA_CLIENT}")).await;
    assert_eq!(
        (controller.status, controller.client_id()),
        (200, BETA_CLIENT.to_owned()),
        "{}",
        controller.text
    );
    let not_controller = micro.token(VAULT, "").await;
    assert_eq!(not_controller.status, 400, "{}", not_controller.text);
    nmi.stop().await;
}

#[tokio::test]
async fn managed_mode_matches_bindings_and_identities_of_the_pods_namespace() {
    let nmi = Nmi::start_with(|s| {
        s.mode = Mode::Managed;
        s.force_namespaced = true;
    })
    .await;
    let identity = nmi.identity("alpha", ALPHA_CLIENT, None);
    Api::<AzureIdentity>::namespaced(nmi.client(), nmi.ns())
        .create(&PostParams::default(), &identity)
        .await
        .unwrap();
    let mut binding = AzureIdentityBinding::new(
        "alpha-binding",
        AzureIdentityBindingSpec {
            azure_identity: Some("alpha".into()),
            selector: Some("alpha".into()),
            ..AzureIdentityBindingSpec::default()
        },
    );
    binding.metadata.namespace = Some(nmi.ns().to_owned());
    Api::<AzureIdentityBinding>::namespaced(nmi.client(), nmi.ns())
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
    let app = nmi.app.clone();
    let ns = nmi.ns().to_owned();
    podid_testkit::wait_for(
        "NMI sees the binding and identity",
        std::time::Duration::from_secs(30),
        || {
            let (app, ns) = (app.clone(), ns.clone());
            async move {
                let state = app.state();
                (!state.bindings_in(&ns).is_empty() && !state.identities_in(&ns).is_empty())
                    .then_some(())
            }
        },
    )
    .await;
    let pod = nmi.pod("managed", &[("aadpodidbinding", "alpha")]).await;
    let served = pod.token(VAULT, "").await;
    assert_eq!(
        (served.status, served.client_id()),
        (200, ALPHA_CLIENT.to_owned()),
        "{}",
        served.text
    );

    // Relabelled: refused at once, although the token is cached.
    let relabel = serde_json::json!({"metadata": {"labels": {"aadpodidbinding": "other"}}});
    Api::<Pod>::namespaced(nmi.client(), nmi.ns())
        .patch("managed", &PatchParams::default(), &Patch::Merge(&relabel))
        .await
        .unwrap();
    let state = nmi.app.state().clone();
    podid_testkit::wait_for(
        "NMI sees the new label",
        std::time::Duration::from_secs(30),
        || {
            let (state, ns) = (state.clone(), ns.clone());
            async move {
                state.pod_by_name(&ns, "managed").ok().filter(|p| {
                    p.labels.get("aadpodidbinding").map(String::as_str) == Some("other")
                })
            }
        },
    )
    .await;
    let refused = pod.token(VAULT, "").await;
    assert_eq!(
        (refused.status, refused.error().as_str()),
        (400, "invalid_request"),
        "{}",
        refused.text
    );
    nmi.stop().await;
}

#[tokio::test]
async fn the_host_listener_serves_named_pods_and_the_pods_port_does_not() {
    let nmi = Nmi::start().await;
    let alpha = nmi.identity("alpha", ALPHA_CLIENT, None);
    let (pod, _) = nmi.assigned_pod("hosted", &alpha).await;
    let host = read(
        plain_client()
            .get(format!("http://{}/host/token?resource={VAULT}", nmi.host))
            .header("podns", nmi.ns())
            .header("podname", "hosted")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(host.status, 200, "{}", host.text);
    assert_eq!(host.json()["clientid"], ALPHA_CLIENT);
    assert!(host.json()["token"]["access_token"].is_string());
    let missing = read(
        plain_client()
            .get(format!("http://{}/host/token?resource={VAULT}", nmi.host))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(missing.status, 400);
    let on_pods_port = pod
        .get(
            &format!("/host/token?resource={VAULT}"),
            &[("podns", nmi.ns()), ("podname", "hosted")],
        )
        .await;
    assert_eq!(on_pods_port.status, 404);
    nmi.stop().await;
}

#[tokio::test]
async fn other_paths_are_proxied_or_blocked_and_refusals_have_their_codes() {
    // E14 with --block-instance-metadata.
    let nmi = Nmi::start_with(|s| {
        short_wait(s);
        s.route.block_instance_metadata = true;
    })
    .await;
    let pod = nmi.pod("caller", &[]).await;
    let unknown = pod.get("/doesnotexist", &[("Metadata", "true")]).await;
    assert_eq!(unknown.status, 404, "{}", unknown.text);
    let journal = nmi.emu.journal(Some(Surface::Imds)).await;
    assert!(
        journal.iter().any(|e| e["path"] == "/doesnotexist"),
        "{journal:?}"
    );
    let no_header = pod.get("/doesnotexist", &[]).await;
    assert_eq!(no_header.status, 400);
    assert!(
        no_header
            .text
            .contains("Required metadata header not specified")
    );
    let blocked = pod
        .get(
            "/metadata/instance?api-version=2021-02-01",
            &[("Metadata", "true")],
        )
        .await;
    assert_eq!(blocked.status, 403);
    let forwarded = pod
        .get(
            &format!("/metadata/identity/oauth2/token?resource={VAULT}"),
            &[("Metadata", "true"), ("X-Forwarded-For", "10.0.0.1")],
        )
        .await;
    assert_eq!(forwarded.status, 400);
    let lookalike = pod
        .get("/metadata/Identity/oauth2/token", &[("Metadata", "true")])
        .await;
    assert_eq!(lookalike.status, 400);
    let object_id = pod.token(VAULT, "&object_id=x").await;
    assert_eq!(object_id.status, 400);
    let redirect = pod.get("/metadata//instance", &[]).await;
    assert_eq!(
        (redirect.status, redirect.location.as_deref()),
        (301, Some("/metadata/instance"))
    );
    // A caller that is no pod of this node, and a host-network pod's IP.
    let stranger = TestPod {
        ip: fresh_ip(),
        ..pod.clone_for_task()
    };
    let unknown_pod = stranger.token(VAULT, "").await;
    assert_eq!(
        (unknown_pod.status, unknown_pod.error().as_str()),
        (500, "server_error")
    );
    let host_network = nmi
        .pod_with("hostnet", &[], "Running", |p| {
            p.spec.as_mut().unwrap().host_network = Some(true);
        })
        .await;
    let refused = host_network.token(VAULT, "").await;
    assert_eq!(refused.status, 500, "{}", refused.text);
    assert!(refused.text.contains("host-network"), "{}", refused.text);
    let metrics = nmi.metrics_text().await;
    assert!(
        metrics.contains(
            "aadpodidentity_kubernetes_api_operations_errors_count{operation_type=\"get_pod_list\"}"
        ),
        "{metrics}"
    );
    nmi.stop().await;
}

#[tokio::test]
async fn the_probe_says_active_and_metrics_use_upstreams_names() {
    let nmi = Nmi::start().await;
    let health = read(
        plain_client()
            .get(format!("http://{}/healthz", nmi.probe))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((health.status, health.text.as_str()), (200, "Active"));
    let pod = nmi.pod("measured", &[("aadpodidbinding", "m")]).await;
    let alpha = nmi.identity("alpha", ALPHA_CLIENT, None);
    nmi.assign(&pod, &alpha, Some(AssignedIdentityState::Assigned))
        .await;
    assert_eq!(pod.token(VAULT, "").await.status, 200);
    let metrics = nmi.metrics_text().await;
    assert!(metrics.contains(&format!(
        "aadpodidentity_nmi_operations_duration_seconds_count{{operation_type=\"/metadata/identity/oauth2/token\",status_code=\"200\",namespace=\"{}\",resource=\"{VAULT}\"}} 1",
        nmi.ns()
    )), "{metrics}");
    assert!(metrics.contains("aadpodidentity_imds_operations_duration_seconds_count{operation_type=\"adal_token_msi_userassignedid\"} 1"), "{metrics}");
    nmi.stop().await;
}
