use pretty_assertions::assert_eq;

use super::fixtures::*;
use crate::diagnostics::{BindingProblem, IdentityProblem, PodProblem};
use crate::{
    DesiredState, Diagnostic, IdentityTarget, MatchOptions, ObjectRef, PodInfo, PodPhase, desired,
};
use podid_api::{AzureIdentity, AzureIdentityBinding};

fn names(state: &DesiredState) -> Vec<String> {
    state.assignments.keys().cloned().collect()
}

const OPTIONS: MatchOptions = MatchOptions {
    force_namespaced: false,
};

/// The desired state for these objects in a cluster whose only node is `node-0`.
fn desired_on_node_0(
    pods: &[PodInfo],
    bindings: &[AzureIdentityBinding],
    identities: &[AzureIdentity],
) -> DesiredState {
    desired(pods, bindings, identities, &nodes(&["node-0"]), OPTIONS)
}

/// Asserts that these objects give no assignments on `node-0`, and returns the diagnostics.
fn nothing_assigned(
    pods: &[PodInfo],
    bindings: &[AzureIdentityBinding],
    identities: &[AzureIdentity],
) -> Vec<Diagnostic> {
    let state = desired_on_node_0(pods, bindings, identities);
    assert!(state.assignments.is_empty());
    state.diagnostics
}

fn binding_problem(namespace: &str, name: &str, problem: BindingProblem) -> Diagnostic {
    Diagnostic::Binding {
        binding: ObjectRef::new(namespace, name),
        problem,
    }
}

fn pod_problem(namespace: &str, name: &str, problem: PodProblem) -> Diagnostic {
    Diagnostic::Pod {
        pod: ObjectRef::new(namespace, name),
        problem,
    }
}

#[test]
fn a_pod_matches_a_binding_whose_selector_equals_its_label_exactly() {
    let state = desired_on_node_0(
        &[
            pod("default", "demo", "demo", "node-0"),
            pod("default", "shout", "DEMO", "node-0"),
        ],
        &[binding("default", "demo-binding", "demo", "demo")],
        &[identity("default", "demo")],
    );
    assert_eq!(names(&state), ["demo-default-demo"]);
    let assignment = &state.assignments["demo-default-demo"];
    assert_eq!(
        assignment.object,
        ObjectRef::new("default", "demo-default-demo")
    );
    assert_eq!(assignment.pod, ObjectRef::new("default", "demo"));
    assert_eq!(assignment.node, "node-0");
    assert_eq!(
        assignment.target,
        IdentityTarget::Machine(uami("demo").into())
    );
    // The pod labelled DEMO matches nothing: the comparison is case-sensitive.
    assert_eq!(
        state.diagnostics,
        [pod_problem(
            "default",
            "shout",
            PodProblem::NoMatchingBinding {
                selector: "DEMO".into()
            }
        )]
    );
}

#[test]
fn pods_without_the_label_or_with_an_empty_one_are_ignored() {
    let mut unlabelled = pod("default", "a", "demo", "node-0");
    unlabelled.label = None;
    let empty = pod("default", "b", "", "node-0");
    let diagnostics = nothing_assigned(
        &[unlabelled, empty],
        // A binding with an empty selector does not match an empty label either.
        &[binding("default", "empty", "demo", "")],
        &[identity("default", "demo")],
    );
    assert_eq!(
        diagnostics,
        [binding_problem(
            "default",
            "empty",
            BindingProblem::NoSelector
        )]
    );
}

#[test]
fn unscheduled_pods_get_nothing_yet() {
    let mut pending = pod("default", "demo", "demo", "");
    pending.phase = PodPhase::Pending;
    let mut unset = pending.clone();
    unset.node_name = None;
    let diagnostics = nothing_assigned(
        &[pending, unset],
        &[binding("default", "b", "demo", "demo")],
        &[identity("default", "demo")],
    );
    assert!(diagnostics.is_empty());
}

#[test]
fn pending_pods_on_a_node_get_identities_for_their_init_containers() {
    for phase in [
        PodPhase::Unreported,
        PodPhase::Pending,
        PodPhase::Other("Unknown".into()),
    ] {
        let mut starting = pod("default", "demo", "demo", "node-0");
        starting.phase = phase.clone();
        let state = desired_on_node_0(
            &[starting],
            &[binding("default", "b", "demo", "demo")],
            &[identity("default", "demo")],
        );
        assert_eq!(names(&state), ["demo-default-demo"], "{phase:?}");
    }
}

#[test]
fn terminal_pods_hold_no_identities() {
    for phase in [PodPhase::Succeeded, PodPhase::Failed] {
        let mut done = pod("default", "job", "demo", "node-0");
        done.phase = phase;
        nothing_assigned(
            &[done],
            &[binding("default", "b", "demo", "demo")],
            &[identity("default", "demo")],
        );
    }
}

#[test]
fn bindings_in_any_namespace_match_and_assignments_live_in_default() {
    let state = desired_on_node_0(
        &[pod("apps", "web", "shared", "node-0")],
        &[binding("identities", "b", "shared-id", "shared")],
        &[identity("identities", "shared-id")],
    );
    let assignment = &state.assignments["web-apps-shared-id"];
    assert_eq!(assignment.object.namespace, "default");
    assert_eq!(
        ObjectRef::of(assignment.binding.as_ref()),
        ObjectRef::new("identities", "b")
    );
}

#[test]
fn a_namespaced_identity_serves_only_its_own_namespace_and_records_there() {
    let state = desired_on_node_0(
        &[
            pod("team", "own", "sel", "node-0"),
            pod("other", "foreign", "sel", "node-0"),
        ],
        &[binding("team", "b", "id", "sel")],
        &[namespaced(identity("team", "id"))],
    );
    assert_eq!(names(&state), ["own-team-id"]);
    assert_eq!(state.assignments["own-team-id"].object.namespace, "team");
    assert_eq!(
        state.diagnostics,
        [pod_problem(
            "other",
            "foreign",
            PodProblem::BindingInOtherNamespace {
                binding: ObjectRef::new("team", "b")
            }
        )]
    );
}

#[test]
fn force_namespaced_treats_every_identity_as_namespaced() {
    let pods = [
        pod("team", "own", "sel", "node-0"),
        pod("other", "foreign", "sel", "node-0"),
    ];
    let state = desired(
        &pods,
        &[binding("team", "b", "id", "sel")],
        &[identity("team", "id")],
        &nodes(&["node-0"]),
        MatchOptions {
            force_namespaced: true,
        },
    );
    assert_eq!(names(&state), ["own-team-id"]);
    assert_eq!(state.assignments["own-team-id"].object.namespace, "team");
}

#[test]
fn the_identity_is_looked_up_in_the_bindings_namespace() {
    let diagnostics = nothing_assigned(
        &[pod("apps", "web", "sel", "node-0")],
        &[binding("apps", "b", "id", "sel")],
        &[identity("elsewhere", "id")],
    );
    assert_eq!(
        diagnostics,
        [binding_problem(
            "apps",
            "b",
            BindingProblem::IdentityNotFound {
                identity: ObjectRef::new("apps", "id")
            }
        )]
    );
}

#[test]
fn a_binding_without_identity_name_has_no_effect() {
    let mut nameless = binding("apps", "b", "", "sel");
    nameless.spec.azure_identity = None;
    let diagnostics = nothing_assigned(
        &[pod("apps", "web", "sel", "node-0")],
        &[nameless],
        &[identity("apps", "id")],
    );
    assert_eq!(
        diagnostics,
        [binding_problem("apps", "b", BindingProblem::NoIdentityName)]
    );
}

#[test]
fn a_type_0_identity_with_an_invalid_resource_id_is_ignored_with_its_bindings() {
    let mut broken = identity("apps", "id");
    broken.spec.resource_id = Some("not-an-id".into());
    let diagnostics = nothing_assigned(
        &[pod("apps", "web", "sel", "node-0")],
        &[binding("apps", "b", "id", "sel")],
        &[broken],
    );
    assert_eq!(
        diagnostics,
        [
            Diagnostic::Identity {
                identity: ObjectRef::new("apps", "id"),
                problem: IdentityProblem::InvalidResourceId {
                    resource_id: "not-an-id".into(),
                    reason: "it must start with /subscriptions/",
                },
            },
            binding_problem(
                "apps",
                "b",
                BindingProblem::IdentityUnusable {
                    identity: ObjectRef::new("apps", "id")
                }
            ),
        ]
    );
}

#[test]
fn service_principals_are_assigned_without_a_machine() {
    let state = desired_on_node_0(
        &[pod("apps", "web", "sel", "node-0")],
        &[binding("apps", "b", "sp", "sel")],
        &[service_principal("apps", "sp")],
    );
    assert_eq!(
        state.assignments["web-apps-sp"].target,
        IdentityTarget::NoMachine
    );
}

#[test]
fn one_pod_gets_one_assignment_per_matching_binding() {
    let state = desired_on_node_0(
        &[pod("apps", "web", "sel", "node-0")],
        &[
            binding("apps", "b1", "id-1", "sel"),
            binding("apps", "b2", "id-2", "sel"),
        ],
        &[identity("apps", "id-1"), identity("apps", "id-2")],
    );
    assert_eq!(names(&state), ["web-apps-id-1", "web-apps-id-2"]);
}

#[test]
fn one_name_from_two_namespaces_keeps_the_smaller_binding_namespace() {
    // The same identity and binding names in two namespaces: the first namespace wins.
    for order in [["ns1", "ns2"], ["ns2", "ns1"]] {
        let state = desired_on_node_0(
            &[pod("ns1", "web", "sel", "node-0")],
            &order.map(|ns| binding(ns, "b", "id", "sel")),
            &order.map(|ns| identity(ns, "id")),
        );
        let assignment = &state.assignments["web-ns1-id"];
        assert_eq!(ObjectRef::of(assignment.identity.as_ref()).namespace, "ns1");
        assert_eq!(ObjectRef::of(assignment.binding.as_ref()).namespace, "ns1");
        assert_eq!(
            state.diagnostics,
            [Diagnostic::DuplicateName {
                name: "web-ns1-id".into(),
                pod: ObjectRef::new("ns1", "web"),
                dropped: ObjectRef::new("ns2", "b"),
                kept_pod: ObjectRef::new("ns1", "web"),
                kept: ObjectRef::new("ns1", "b"),
            }]
        );
    }
}

#[test]
fn names_that_join_alike_keep_the_first_pod() {
    // "a-b" in "c" and "a" in "b-c" both give a-b-c-id.
    let state = desired_on_node_0(
        &[
            pod("c", "a-b", "sel", "node-0"),
            pod("b-c", "a", "sel", "node-0"),
        ],
        &[
            binding("b-c", "b", "id", "sel"),
            binding("c", "b", "id", "sel"),
        ],
        &[identity("b-c", "id"), identity("c", "id")],
    );
    assert_eq!(names(&state), ["a-b-c-id"]);
    assert_eq!(
        state.assignments["a-b-c-id"].pod,
        ObjectRef::new("b-c", "a")
    );
}

#[test]
fn a_pod_on_an_unknown_node_gets_nothing() {
    let diagnostics = nothing_assigned(
        &[pod("apps", "web", "sel", "gone")],
        &[binding("apps", "b", "id", "sel")],
        &[identity("apps", "id")],
    );
    assert_eq!(
        diagnostics,
        [pod_problem(
            "apps",
            "web",
            PodProblem::NodeNotFound {
                node: "gone".into()
            }
        )]
    );
}

#[test]
fn a_node_without_a_machine_still_gets_assignments() {
    let (index, diagnostics) = crate::NodeIndex::new(&[crate::NodeInfo {
        name: "kind-worker".into(),
        provider_id: Some("kind://docker/kind/kind-worker".into()),
    }]);
    assert_eq!(diagnostics.len(), 1);
    let state = desired(
        &[pod("apps", "web", "sel", "kind-worker")],
        &[binding("apps", "b", "id", "sel")],
        &[identity("apps", "id")],
        &index,
        OPTIONS,
    );
    assert_eq!(names(&state), ["web-apps-id"]);
}
