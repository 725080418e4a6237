use std::collections::BTreeMap;

use podid_api::names::{BEHAVIOR_ANNOTATION, BEHAVIOR_NAMESPACED, POD_LABEL_KEY};
use podid_api::{
    AssignedIdentityState, AzureAssignedIdentity, AzureAssignedIdentitySpec,
    AzureAssignedIdentityStatus, AzureIdentity, AzureIdentityBinding, AzureIdentityBindingSpec,
    AzureIdentitySpec, IdentityType,
};
use podid_azure::credential::IdentitySelector;
use pretty_assertions::assert_eq;
use proptest::prelude::*;

use super::*;
use crate::pods::PodFacts;
use crate::state::ObjectKey;

const NODE: &str = "node-0";

fn identity(namespace: &str, name: &str, client_id: &str, namespaced: bool) -> AzureIdentity {
    let mut identity = AzureIdentity::new(
        name,
        AzureIdentitySpec {
            client_id: Some(client_id.into()),
            resource_id: Some(resource_id(name)),
            ..AzureIdentitySpec::default()
        },
    );
    identity.metadata.namespace = Some(namespace.into());
    if namespaced {
        identity.metadata.annotations = Some(BTreeMap::from([(
            BEHAVIOR_ANNOTATION.to_owned(),
            BEHAVIOR_NAMESPACED.to_owned(),
        )]));
    }
    identity
}

fn resource_id(name: &str) -> String {
    format!(
        "/subscriptions/s/resourceGroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}"
    )
}

fn assigned(
    pod: (&str, &str),
    node: &str,
    identity: &AzureIdentity,
    state: Option<AssignedIdentityState>,
) -> AzureAssignedIdentity {
    let name = format!("{}-{}-{}", pod.1, pod.0, identity.name_any());
    let mut aai = AzureAssignedIdentity::new(
        &name,
        AzureAssignedIdentitySpec {
            azure_identity_ref: Some(identity.clone()),
            pod: Some(pod.1.into()),
            pod_namespace: Some(pod.0.into()),
            node_name: Some(node.into()),
            ..AzureAssignedIdentitySpec::default()
        },
    );
    aai.metadata.namespace = Some("default".into());
    aai.status = state.map(|state| AzureAssignedIdentityStatus {
        status: Some(state),
        available_replicas: Some(1),
    });
    aai
}

/// The binding selecting the pod in most tests (its assignments name no binding: they count
/// while some binding selects the pod).
static SELECTING: std::sync::LazyLock<Vec<ObjectKey>> =
    std::sync::LazyLock::new(|| vec![("team".to_owned(), "app-binding".to_owned())]);

fn inputs(assigned: &[AzureAssignedIdentity]) -> StandardInputs<'_> {
    StandardInputs {
        node: NODE,
        pod_namespace: "team",
        pod_name: "app",
        assigned,
        force_namespaced: false,
        selecting_bindings: &SELECTING,
    }
}

/// An assignment made for the binding `team/<binding>`.
fn assigned_for(
    binding: &str,
    identity: &AzureIdentity,
    state: Option<AssignedIdentityState>,
) -> AzureAssignedIdentity {
    let mut aai = assigned(POD, NODE, identity, state);
    let mut made_for = podid_api::AzureIdentityBinding::new(binding, Default::default());
    made_for.metadata.namespace = Some("team".into());
    aai.spec.azure_binding_ref = Some(made_for);
    aai
}

fn serve(identity: &AzureIdentity) -> Decision {
    Decision::Serve(Selected {
        identity: IdentityRef::of(identity),
        source: token_source(&identity.spec).unwrap(),
    })
}

const POD: (&str, &str) = ("team", "app");
const ASSIGNED: Option<AssignedIdentityState> = Some(AssignedIdentityState::Assigned);
const CREATED: Option<AssignedIdentityState> = Some(AssignedIdentityState::Created);

fn look(aais: &[AzureAssignedIdentity], requested: &RequestedIdentity, attempt: u32) -> Decision {
    select_standard(&inputs(aais), requested, RetryPolicy::default(), attempt)
}

#[test]
fn an_assigned_identity_is_served_by_its_client_id() {
    let id = identity("team", "kv", "c-kv", false);
    let aais = [assigned(POD, NODE, &id, ASSIGNED)];
    let decision = look(&aais, &RequestedIdentity::Unspecified, 0);
    assert_eq!(decision, serve(&id));
    let Decision::Serve(selected) = decision else {
        unreachable!("asserted above")
    };
    assert_eq!(
        selected.source,
        TokenSource::Imds {
            selector: IdentitySelector::ClientId("c-kv".into())
        }
    );
}

#[test]
fn the_legacy_empty_status_is_served_before_assigned() {
    let legacy = identity("team", "b-legacy", "c1", false);
    let current = identity("team", "a-current", "c2", false);
    let empty = Some(AssignedIdentityState::Other(String::new()));
    for legacy_state in [None, empty] {
        let aais = [
            assigned(POD, NODE, &current, ASSIGNED),
            assigned(POD, NODE, &legacy, legacy_state),
        ];
        assert_eq!(
            look(&aais, &RequestedIdentity::Unspecified, 0),
            serve(&legacy)
        );
        // A request for the assigned one still finds it.
        assert_eq!(
            look(&aais, &RequestedIdentity::ClientId("c2".into()), 0),
            serve(&current)
        );
    }
}

#[test]
fn a_requested_identity_is_found_by_client_or_resource_id_ignoring_case() {
    let kv = identity("team", "kv", "AAAA-kv", false);
    let dns = identity("team", "dns", "bbbb-dns", false);
    let aais = [
        assigned(POD, NODE, &kv, ASSIGNED),
        assigned(POD, NODE, &dns, ASSIGNED),
    ];
    for requested in [
        RequestedIdentity::ClientId("bbbb-dns".into()),
        RequestedIdentity::ClientId("BBBB-DNS".into()),
        RequestedIdentity::ResourceId(resource_id("dns").to_lowercase()),
    ] {
        assert_eq!(look(&aais, &requested, 0), serve(&dns), "{requested:?}");
    }
    assert_eq!(
        look(&aais, &RequestedIdentity::ClientId("aaaa-kv".into()), 0),
        serve(&kv)
    );
    // Several and none requested: the first by namespace and name, whatever the order.
    assert_eq!(look(&aais, &RequestedIdentity::Unspecified, 0), serve(&dns));
    let reversed = [aais[1].clone(), aais[0].clone()];
    assert_eq!(
        look(&reversed, &RequestedIdentity::Unspecified, 0),
        serve(&dns)
    );
}

#[test]
fn only_this_pods_assignments_on_this_node_in_a_served_state_count() {
    let id = identity("team", "kv", "c", false);
    let aais = [
        assigned(("team", "other"), NODE, &id, ASSIGNED),
        assigned(("other", "app"), NODE, &id, ASSIGNED),
        assigned(POD, "node-1", &id, ASSIGNED),
        assigned(POD, NODE, &id, Some(AssignedIdentityState::Unassigned)),
        assigned(
            POD,
            NODE,
            &id,
            Some(AssignedIdentityState::Other("Moving".into())),
        ),
    ];
    let retry = RetryPolicy::default();
    assert_eq!(
        look(
            &aais,
            &RequestedIdentity::Unspecified,
            retry.created_attempts
        ),
        Decision::Fail(SelectionError::NoIdentity {
            pod: "team/app".into()
        })
    );
    let mut without_snapshot = assigned(POD, NODE, &id, ASSIGNED);
    without_snapshot.spec.azure_identity_ref = None;
    assert_eq!(
        look(&[without_snapshot], &RequestedIdentity::Unspecified, 0),
        Decision::Wait(retry.interval)
    );
}

#[test]
fn namespaced_identities_serve_only_their_own_namespace() {
    let foreign = identity("other", "kv", "c", true);
    let aais = [assigned(POD, NODE, &foreign, ASSIGNED)];
    let retry = RetryPolicy::default();
    assert_eq!(
        look(
            &aais,
            &RequestedIdentity::Unspecified,
            retry.created_attempts
        ),
        Decision::Fail(SelectionError::NoIdentity {
            pod: "team/app".into()
        })
    );
    let plain = identity("other", "kv", "c", false);
    let aais = [assigned(POD, NODE, &plain, ASSIGNED)];
    assert_eq!(
        look(&aais, &RequestedIdentity::Unspecified, 0),
        serve(&plain)
    );
    let forced = StandardInputs {
        force_namespaced: true,
        ..inputs(&aais)
    };
    assert_eq!(
        select_standard(
            &forced,
            &RequestedIdentity::Unspecified,
            retry,
            retry.created_attempts
        ),
        Decision::Fail(SelectionError::NoIdentity {
            pod: "team/app".into()
        })
    );
    let home = identity("team", "kv", "c", true);
    let aais = [assigned(POD, NODE, &home, ASSIGNED)];
    let forced = StandardInputs {
        force_namespaced: true,
        ..inputs(&aais)
    };
    assert_eq!(
        select_standard(&forced, &RequestedIdentity::Unspecified, retry, 0),
        serve(&home)
    );
}

/// Runs looks until a decision other than waiting, returning it and the number of waits.
fn run(
    aais: &[AzureAssignedIdentity],
    requested: &RequestedIdentity,
    retry: RetryPolicy,
) -> (Decision, u32) {
    let mut attempt = 0;
    loop {
        match select_standard(&inputs(aais), requested, retry, attempt) {
            Decision::Wait(pause) => {
                assert_eq!(pause, retry.interval);
                attempt += 1;
            }
            other => return (other, attempt),
        }
    }
}

#[test]
fn without_any_assignment_the_pod_waits_created_attempts_then_fails() {
    let (decision, waits) = run(&[], &RequestedIdentity::Unspecified, RetryPolicy::default());
    assert_eq!(waits, 16, "upstream's 80 s");
    assert_eq!(
        decision,
        Decision::Fail(SelectionError::NoIdentity {
            pod: "team/app".into()
        })
    );
}

#[test]
fn a_pod_no_binding_selects_fails_at_once_even_with_an_assignment_under_way() {
    let retry = RetryPolicy::default();
    let kv = identity("team", "kv", "c", false);
    fn unselected(aais: &[AzureAssignedIdentity]) -> StandardInputs<'_> {
        StandardInputs {
            selecting_bindings: &[],
            ..inputs(aais)
        }
    }
    assert_eq!(
        select_standard(&unselected(&[]), &RequestedIdentity::Unspecified, retry, 0),
        Decision::Fail(SelectionError::NoIdentity {
            pod: "team/app".into()
        })
    );
    // An assignment under way or done no longer counts once nothing selects the pod: the
    // controller will remove it, and a cached token must not outlive the binding.
    for state in [CREATED, ASSIGNED] {
        let aais = [assigned(POD, NODE, &kv, state)];
        assert!(matches!(
            select_standard(
                &unselected(&aais),
                &RequestedIdentity::Unspecified,
                retry,
                0
            ),
            Decision::Fail(SelectionError::NoIdentity { .. })
        ));
    }
}

#[test]
fn an_assignment_is_served_only_while_its_own_binding_selects_the_pod() {
    let retry = RetryPolicy::default();
    let kv = identity("team", "kv", "c", false);
    let aais = [assigned_for("app-binding", &kv, ASSIGNED)];
    assert_eq!(
        select_standard(&inputs(&aais), &RequestedIdentity::Unspecified, retry, 0),
        serve(&kv)
    );
    // The label now names another binding: not served (that binding may bring its own
    // assignment, so the pod waits for it).
    let elsewhere = [("team".to_owned(), "other-binding".to_owned())];
    let relabelled = StandardInputs {
        selecting_bindings: &elsewhere,
        ..inputs(&aais)
    };
    assert_eq!(
        select_standard(&relabelled, &RequestedIdentity::Unspecified, retry, 0),
        Decision::Wait(retry.interval)
    );
    // The binding was deleted and nothing else selects the pod: refused at once.
    let deleted = StandardInputs {
        selecting_bindings: &[],
        ..inputs(&aais)
    };
    assert!(matches!(
        select_standard(&deleted, &RequestedIdentity::Unspecified, retry, 0),
        Decision::Fail(SelectionError::NoIdentity { .. })
    ));
}

#[test]
fn another_identity_fails_at_once_when_every_selecting_binding_has_its_assignment() {
    let retry = RetryPolicy::default();
    let kv = identity("team", "kv", "c", false);
    let other = RequestedIdentity::ClientId("someone-elses".into());
    let aais = [assigned_for("app-binding", &kv, ASSIGNED)];
    assert!(matches!(
        select_standard(&inputs(&aais), &other, retry, 0),
        Decision::Fail(_)
    ));
    // A second binding selecting the pod has no assignment yet: it may bring that identity.
    let two = [
        ("team".to_owned(), "app-binding".to_owned()),
        ("team".to_owned(), "second-binding".to_owned()),
    ];
    let waiting = StandardInputs {
        selecting_bindings: &two,
        ..inputs(&aais)
    };
    assert_eq!(
        select_standard(&waiting, &other, retry, 0),
        Decision::Wait(retry.interval)
    );
}

#[test]
fn a_created_assignment_is_waited_for_until_every_look_is_used() {
    let id = identity("team", "kv", "c", false);
    let aais = [assigned(POD, NODE, &id, CREATED)];
    let (decision, waits) = run(
        &aais,
        &RequestedIdentity::Unspecified,
        RetryPolicy::default(),
    );
    assert_eq!(waits, 19, "20 looks, no pause after the last");
    assert_eq!(
        decision,
        Decision::Fail(SelectionError::NotYetAssigned {
            pod: "team/app".into()
        })
    );
    // Once assigned, the next look serves it.
    let now_assigned = [assigned(POD, NODE, &id, ASSIGNED)];
    assert_eq!(
        look(&now_assigned, &RequestedIdentity::Unspecified, 7),
        serve(&id)
    );
}

#[test]
fn a_created_assignment_of_another_identity_does_not_hold_a_request() {
    let kv = identity("team", "kv", "c-kv", false);
    let aais = [assigned(POD, NODE, &kv, CREATED)];
    let (decision, waits) = run(
        &aais,
        &RequestedIdentity::ClientId("c-dns".into()),
        RetryPolicy::default(),
    );
    assert_eq!(waits, 16);
    assert_eq!(
        decision,
        Decision::Fail(SelectionError::NotBound {
            pod: "team/app".into(),
            requested: "with clientID ##### REDACTED #####".into()
        })
    );
}

#[test]
fn short_retry_settings_fail_fast_and_zero_still_looks_once() {
    // The e2e suite's `--retry-attempts-for-created=1 --retry-attempts-for-assigned=1`.
    let quick = RetryPolicy {
        created_attempts: 1,
        assigned_attempts: 1,
        interval: std::time::Duration::from_secs(1),
    };
    let id = identity("team", "kv", "c", false);
    let created = [assigned(POD, NODE, &id, CREATED)];
    assert_eq!(run(&created, &RequestedIdentity::Unspecified, quick).1, 1);
    assert_eq!(run(&[], &RequestedIdentity::Unspecified, quick).1, 1);
    let none = RetryPolicy {
        created_attempts: 0,
        assigned_attempts: 0,
        ..quick
    };
    let assigned_now = [assigned(POD, NODE, &id, ASSIGNED)];
    assert_eq!(
        run(&assigned_now, &RequestedIdentity::Unspecified, none),
        (serve(&id), 0)
    );
    assert!(matches!(
        run(&created, &RequestedIdentity::Unspecified, none),
        (Decision::Fail(SelectionError::NotYetAssigned { .. }), 0)
    ));
}

#[test]
fn object_id_requests_are_refused_in_both_modes() {
    let requested = RequestedIdentity::ObjectId("o".into());
    assert_eq!(
        look(&[], &requested, 0),
        Decision::Fail(SelectionError::ObjectIdNotSupported)
    );
    assert_eq!(
        select_managed(&managed_pod(Some("sel")), &requested, &[], &[]),
        Err(SelectionError::ObjectIdNotSupported)
    );
}

#[test]
fn an_identity_that_cannot_make_tokens_fails_with_the_reason() {
    let mut broken = identity("team", "sp", "c", false);
    broken.spec.identity_type = Some(IdentityType::from(1));
    let aais = [assigned(POD, NODE, &broken, ASSIGNED)];
    assert_eq!(
        look(&aais, &RequestedIdentity::Unspecified, 0),
        Decision::Fail(SelectionError::Unusable {
            identity: IdentityRef::of(&broken),
            reason: Unusable::MissingField("tenantID")
        })
    );
}

#[test]
fn replies_keep_404_only_for_assignments_in_progress() {
    let pod = || "team/app".to_owned();
    let cases = [
        (SelectionError::ObjectIdNotSupported, 400, 400),
        (SelectionError::NoIdentity { pod: pod() }, 400, 503),
        (
            SelectionError::NotBound {
                pod: pod(),
                requested: "x".into(),
            },
            400,
            503,
        ),
        (SelectionError::NotYetAssigned { pod: pod() }, 404, 503),
        (
            SelectionError::Unusable {
                identity: IdentityRef {
                    namespace: "team".into(),
                    name: "sp".into(),
                },
                reason: Unusable::UnknownType(3),
            },
            403,
            403,
        ),
    ];
    for (error, plain, with_retry_after) in cases {
        let reply = error.reply(false);
        assert_eq!(reply.status, plain, "{error}");
        assert_eq!(reply.retry_after_seconds, None);
        assert_eq!(reply.description, error.to_string());
        let reply = error.reply(true);
        assert_eq!(reply.status, with_retry_after, "{error}");
        assert_eq!(
            reply.retry_after_seconds,
            (with_retry_after == 503).then_some(20)
        );
    }
    assert!(
        SelectionError::NoIdentity { pod: pod() }
            .to_string()
            .starts_with("Identity not found")
    );
}

#[test]
fn client_ids_are_redacted_as_upstream() {
    assert_eq!(
        redact("8d3c2e7a-0000-1111-2222-333344445555"),
        "8d3c##### REDACTED #####5555"
    );
    assert_eq!(redact("12345678"), "1234##### REDACTED #####5678");
    assert_eq!(redact("1234567"), "##### REDACTED #####");
    assert_eq!(redact("ééééééééé"), "éééé##### REDACTED #####éééé");
}

fn managed_pod(label: Option<&str>) -> PodFacts {
    PodFacts {
        namespace: "team".into(),
        name: "app".into(),
        labels: label
            .map(|value| BTreeMap::from([(POD_LABEL_KEY.to_owned(), value.to_owned())]))
            .unwrap_or_default(),
        ..PodFacts::default()
    }
}

fn binding(namespace: &str, identity: &str, selector: Option<&str>) -> AzureIdentityBinding {
    let mut binding = AzureIdentityBinding::new(
        &format!("{identity}-binding"),
        AzureIdentityBindingSpec {
            azure_identity: Some(identity.into()),
            selector: selector.map(Into::into),
            weight: None,
        },
    );
    binding.metadata.namespace = Some(namespace.into());
    binding
}

#[test]
fn managed_mode_matches_bindings_and_identities_of_the_pods_namespace() {
    let kv = identity("team", "kv", "c-kv", false);
    let dns = identity("team", "dns", "c-dns", false);
    let foreign = identity("other", "kv", "c-foreign", false);
    let identities = [foreign.clone(), kv.clone(), dns.clone()];
    let bindings = [
        binding("team", "kv", Some("sel")),
        binding("team", "dns", Some("sel")),
        binding("other", "kv", Some("sel")),
    ];
    let pod = managed_pod(Some("sel"));
    let pick = |requested| select_managed(&pod, &requested, &bindings, &identities);
    let expect = |identity: &AzureIdentity| {
        Ok(Selected {
            identity: IdentityRef::of(identity),
            source: token_source(&identity.spec).unwrap(),
        })
    };
    assert_eq!(pick(RequestedIdentity::Unspecified), expect(&dns));
    assert_eq!(
        pick(RequestedIdentity::ClientId("C-KV".into())),
        expect(&kv)
    );
    assert_eq!(
        pick(RequestedIdentity::ResourceId(resource_id("kv"))),
        expect(&kv)
    );
    assert_eq!(
        pick(RequestedIdentity::ClientId("c-foreign".into())),
        Err(SelectionError::NotBound {
            pod: "team/app".into(),
            requested: "with clientID c-fo##### REDACTED #####eign".into()
        })
    );
}

#[test]
fn managed_mode_needs_a_label_equal_to_the_selector() {
    let kv = identity("team", "kv", "c-kv", false);
    let no_selector = [binding("team", "kv", None), binding("team", "kv", Some(""))];
    for label in [None, Some("")] {
        assert_eq!(
            select_managed(
                &managed_pod(label),
                &RequestedIdentity::Unspecified,
                &no_selector,
                std::slice::from_ref(&kv)
            ),
            Err(SelectionError::NoIdentity {
                pod: "team/app".into()
            }),
            "{label:?}"
        );
    }
    let other_selector = [binding("team", "kv", Some("SEL"))];
    assert!(
        select_managed(
            &managed_pod(Some("sel")),
            &RequestedIdentity::Unspecified,
            &other_selector,
            &[kv]
        )
        .is_err()
    );
}

#[test]
fn managed_mode_serves_service_principals() {
    let mut sp = identity("team", "sp", "app", false);
    sp.spec.identity_type = Some(IdentityType::from(1));
    sp.spec.tenant_id = Some("tenant".into());
    sp.spec.client_password = Some(k8s_openapi::api::core::v1::SecretReference {
        name: Some("sp-secret".into()),
        namespace: Some("team".into()),
    });
    let selected = select_managed(
        &managed_pod(Some("sel")),
        &RequestedIdentity::ClientId("app".into()),
        &[binding("team", "sp", Some("sel"))],
        &[sp],
    )
    .unwrap();
    let TokenSource::ClientSecret(principal) = selected.source else {
        panic!("type 1 is served with its client secret");
    };
    assert_eq!(principal.tenant_id, "tenant");
    assert_eq!(principal.secret.name, "sp-secret");
}

/// A small world: identities named `id0..3` in namespaces `team`/`other`, some namespaced,
/// and assignments of them to a few pods and nodes in every state.
fn world() -> impl Strategy<Value = (Vec<AzureIdentity>, Vec<AzureAssignedIdentity>)> {
    let identities =
        proptest::collection::vec((any::<bool>(), any::<bool>()), 4).prop_map(|flags| {
            flags
                .into_iter()
                .enumerate()
                .map(|(i, (home, namespaced))| {
                    let namespace = if home { "team" } else { "other" };
                    identity(
                        namespace,
                        &format!("id{i}"),
                        &format!("client-{i}"),
                        namespaced,
                    )
                })
                .collect::<Vec<_>>()
        });
    identities.prop_flat_map(|identities| {
        let assignment = (0usize..4, 0usize..3, 0usize..2, 0usize..5);
        proptest::collection::vec(assignment, 0..10).prop_map(move |rows| {
            let pods = [("team", "app"), ("team", "web"), ("other", "app")];
            let states = [
                None,
                Some(AssignedIdentityState::Assigned),
                Some(AssignedIdentityState::Created),
                Some(AssignedIdentityState::Unassigned),
                Some(AssignedIdentityState::Other(String::new())),
            ];
            let mut aais: Vec<AzureAssignedIdentity> = rows
                .into_iter()
                .map(|(id, pod, node, state)| {
                    assigned(
                        pods[pod],
                        ["node-0", "node-1"][node],
                        &identities[id],
                        states[state].clone(),
                    )
                })
                .collect();
            // Assignment names are unique in a real cache.
            aais.sort_by_key(|aai| aai.name_any());
            aais.dedup_by_key(|aai| aai.name_any());
            (identities.clone(), aais)
        })
    })
}

fn requested() -> impl Strategy<Value = RequestedIdentity> {
    prop_oneof![
        Just(RequestedIdentity::Unspecified),
        (0usize..5).prop_map(|i| RequestedIdentity::ClientId(format!("CLIENT-{i}"))),
        (0usize..5).prop_map(|i| RequestedIdentity::ResourceId(resource_id(&format!("id{i}")))),
    ]
}

proptest! {
    #[test]
    fn standard_mode_serves_only_identities_assigned_to_the_pod_here(
        (_, aais) in world(),
        requested in requested(),
        attempt in 0u32..25,
        force_namespaced in any::<bool>(),
    ) {
        let inputs = StandardInputs { force_namespaced, ..inputs(&aais) };
        let decision = select_standard(&inputs, &requested, RetryPolicy::default(), attempt);
        let mut reversed = aais.clone();
        reversed.reverse();
        let reversed_inputs = StandardInputs { assigned: &reversed, ..inputs };
        prop_assert_eq!(
            &decision,
            &select_standard(&reversed_inputs, &requested, RetryPolicy::default(), attempt)
        );
        if let Decision::Serve(selected) = decision {
            let holder = aais.iter().find(|aai| {
                let identity = aai.spec.azure_identity_ref.as_ref().unwrap();
                IdentityRef::of(identity) == selected.identity
                    && aai.spec.pod.as_deref() == Some("app")
                    && aai.spec.pod_namespace.as_deref() == Some("team")
                    && aai.spec.node_name.as_deref() == Some(NODE)
                    && !matches!(
                        aai.status.as_ref().and_then(|s| s.status.as_ref()),
                        Some(AssignedIdentityState::Created | AssignedIdentityState::Unassigned)
                    )
            });
            prop_assert!(holder.is_some(), "served {} without an assignment", selected.identity);
            let identity = holder.unwrap().spec.azure_identity_ref.as_ref().unwrap();
            if force_namespaced || podid_api::is_namespaced(identity) {
                prop_assert_eq!(selected.identity.namespace.as_str(), "team");
            }
            prop_assert!(matches_request(identity, &requested));
        }
    }

    #[test]
    fn managed_mode_serves_only_identities_bound_in_the_pods_namespace(
        (identities, _) in world(),
        rows in proptest::collection::vec((0usize..4, any::<bool>(), 0usize..3), 0..6),
        label in proptest::option::of("sel|SEL|other"),
        requested in requested(),
    ) {
        let selectors = ["sel", "other", ""];
        let bindings: Vec<AzureIdentityBinding> = rows
            .iter()
            .enumerate()
            .map(|(i, (id, home, selector))| {
                let mut b = binding(if *home { "team" } else { "other" }, &format!("id{id}"), Some(selectors[*selector]));
                b.metadata.name = Some(format!("binding-{i}"));
                b
            })
            .collect();
        let pod = managed_pod(label.as_deref());
        let result = select_managed(&pod, &requested, &bindings, &identities);
        let mut reversed_bindings = bindings.clone();
        reversed_bindings.reverse();
        let mut reversed_identities = identities.clone();
        reversed_identities.reverse();
        prop_assert_eq!(
            &result,
            &select_managed(&pod, &requested, &reversed_bindings, &reversed_identities)
        );
        if let Ok(selected) = result {
            prop_assert_eq!(selected.identity.namespace.as_str(), "team");
            let bound = bindings.iter().any(|b| {
                b.metadata.namespace.as_deref() == Some("team")
                    && b.spec.selector.as_deref() == label.as_deref()
                    && b.spec.azure_identity.as_deref() == Some(selected.identity.name.as_str())
            });
            prop_assert!(bound, "served {} without a binding", selected.identity);
        }
    }
}
