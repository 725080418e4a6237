//! The AzureAssignedIdentities MIC wants: every scheduled pod matched, through the bindings
//! whose selector equals its `aadpodidbinding` label, to the identities those bindings name.

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use kube::ResourceExt;
use podid_api::names::assigned_identity_name;
use podid_api::{AzureIdentity, AzureIdentityBinding, is_namespaced};

use crate::diagnostics::{BindingProblem, Diagnostic, PodProblem};
use crate::{Assignment, IdentityTarget, NodeIndex, ObjectRef, PodInfo};

/// Namespace of AzureAssignedIdentities unless matching is namespaced.
pub const DEFAULT_ASSIGNED_NAMESPACE: &str = "default";

/// How pods are matched.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MatchOptions {
    /// `--forceNamespaced`: every identity is used only by bindings and pods of its own
    /// namespace, as if each carried the namespaced annotation.
    pub force_namespaced: bool,
}

/// What MIC wants, and why some objects contributed nothing.
#[derive(Debug, Clone, Default)]
pub struct DesiredState {
    /// Keyed by the AzureAssignedIdentity's name, unique cluster-wide like upstream's.
    pub assignments: BTreeMap<String, Assignment>,
    pub diagnostics: Vec<Diagnostic>,
}

/// An identity that can be assigned, with what it needs in Azure.
struct UsableIdentity<'a> {
    identity: &'a Arc<AzureIdentity>,
    target: IdentityTarget,
}

/// A binding whose identity is usable.
struct UsableBinding<'a> {
    binding: &'a Arc<AzureIdentityBinding>,
    identity: &'a UsableIdentity<'a>,
}

/// The desired AzureAssignedIdentities, by upstream's rules:
///
/// - a pod takes part when its `aadpodidbinding` label is set and not empty and it is on a
///   node (`spec.nodeName`). Phase does not matter, so a `Pending` pod's init containers get
///   their identities, **except** (deviation) that a `Succeeded` or `Failed` pod, whose
///   containers never run again, no longer holds identities on its node;
/// - it matches every binding, in any namespace, whose `selector` equals the label value
///   exactly;
/// - a binding names an identity in the binding's own namespace; an identity of type 0 needs a
///   valid `resourceID`, other types need nothing in Azure;
/// - a namespaced identity (its annotation, or `force_namespaced`) is used only when binding and
///   pod are in its namespace, and its AzureAssignedIdentity lives there too; otherwise in
///   `default`;
/// - the name is `<pod>-<podNamespace>-<identity>`. When two matches give one name (the same
///   identity name in two namespaces, or names that join alike), the first in (pod, binding)
///   order by namespace then name wins, as upstream's sort made it for bindings;
/// - a pod whose node is not known gets nothing (upstream dropped those creates).
///
/// Identities and bindings may come owned or shared (`Arc`, as the controller's caches hold
/// them); the assignments share them either way.
pub fn desired<I, B>(
    pods: &[impl Borrow<PodInfo>],
    bindings: &[B],
    identities: &[I],
    nodes: &NodeIndex,
    options: MatchOptions,
) -> DesiredState
where
    I: Clone + Into<Arc<AzureIdentity>>,
    B: Clone + Into<Arc<AzureIdentityBinding>>,
{
    let mut diagnostics = Vec::new();
    let identities: Vec<Arc<AzureIdentity>> = identities.iter().cloned().map(Into::into).collect();
    let bindings: Vec<Arc<AzureIdentityBinding>> =
        bindings.iter().cloned().map(Into::into).collect();

    let identities: BTreeMap<ObjectRef, UsableIdentity> = identities
        .iter()
        .filter_map(|identity| match IdentityTarget::of(&identity.spec) {
            Ok(target) => Some((
                ObjectRef::of(identity.as_ref()),
                UsableIdentity { identity, target },
            )),
            Err(problem) => {
                diagnostics.push(Diagnostic::Identity {
                    identity: ObjectRef::of(identity.as_ref()),
                    problem,
                });
                None
            }
        })
        .collect();
    let invalid_identities: BTreeSet<ObjectRef> = diagnostics
        .iter()
        .filter_map(|d| match d {
            Diagnostic::Identity { identity, .. } => Some(identity.clone()),
            _ => None,
        })
        .collect();

    let mut sorted_bindings: Vec<&Arc<AzureIdentityBinding>> = bindings.iter().collect();
    sorted_bindings.sort_by_key(|binding| ObjectRef::of(binding.as_ref()));
    // Every selector some binding has, usable or not: a pod matching only unusable bindings
    // is explained by the bindings' diagnostics.
    let mut selectors = BTreeSet::new();
    let mut by_selector: BTreeMap<&str, Vec<UsableBinding>> = BTreeMap::new();
    for binding in sorted_bindings {
        let binding_ref = ObjectRef::of(binding.as_ref());
        let mut skip = |problem| {
            diagnostics.push(Diagnostic::Binding {
                binding: binding_ref.clone(),
                problem,
            })
        };
        let Some(selector) = binding.spec.selector.as_deref().filter(|s| !s.is_empty()) else {
            skip(BindingProblem::NoSelector);
            continue;
        };
        selectors.insert(selector);
        let Some(name) = binding
            .spec
            .azure_identity
            .as_deref()
            .filter(|n| !n.is_empty())
        else {
            skip(BindingProblem::NoIdentityName);
            continue;
        };
        let identity_ref = ObjectRef::new(&binding_ref.namespace, name);
        match identities.get(&identity_ref) {
            Some(identity) => by_selector
                .entry(selector)
                .or_default()
                .push(UsableBinding { binding, identity }),
            None if invalid_identities.contains(&identity_ref) => {
                skip(BindingProblem::IdentityUnusable {
                    identity: identity_ref,
                })
            }
            None => skip(BindingProblem::IdentityNotFound {
                identity: identity_ref,
            }),
        }
    }

    let mut pods: Vec<&PodInfo> = pods.iter().map(Borrow::borrow).collect();
    // Compared in place: a key built per comparison would allocate O(n log n) strings.
    pods.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    let mut assignments: BTreeMap<String, Assignment> = BTreeMap::new();
    for pod in pods {
        let (Some(selector), Some(node)) = (pod.selector(), pod.node()) else {
            continue;
        };
        if pod.phase.is_terminal() {
            continue;
        }
        let pod_ref = pod.object_ref();
        let skipped = |problem| Diagnostic::Pod {
            pod: pod_ref.clone(),
            problem,
        };
        let Some(matched) = by_selector.get(selector) else {
            if !selectors.contains(selector) {
                diagnostics.push(skipped(PodProblem::NoMatchingBinding {
                    selector: selector.to_owned(),
                }));
            }
            continue;
        };
        if !nodes.contains(node) {
            diagnostics.push(skipped(PodProblem::NodeNotFound {
                node: node.to_owned(),
            }));
            continue;
        }
        for UsableBinding { binding, identity } in matched {
            let binding_ref = ObjectRef::of(binding.as_ref());
            let namespaced = options.force_namespaced || is_namespaced(identity.identity);
            if namespaced && binding_ref.namespace != pod.namespace {
                diagnostics.push(skipped(PodProblem::BindingInOtherNamespace {
                    binding: binding_ref,
                }));
                continue;
            }
            let identity_name = identity.identity.name_any();
            let object = ObjectRef::new(
                if namespaced {
                    binding_ref.namespace.as_str()
                } else {
                    DEFAULT_ASSIGNED_NAMESPACE
                },
                assigned_identity_name(&pod.name, &pod.namespace, &identity_name),
            );
            if let Some(kept) = assignments.get(&object.name) {
                diagnostics.push(Diagnostic::DuplicateName {
                    name: object.name.clone(),
                    pod: pod_ref.clone(),
                    dropped: binding_ref,
                    kept_pod: kept.pod.clone(),
                    kept: ObjectRef::of(kept.binding.as_ref()),
                });
                continue;
            }
            assignments.insert(
                object.name.clone(),
                Assignment {
                    object,
                    pod: pod_ref.clone(),
                    node: node.to_owned(),
                    identity: Arc::clone(identity.identity),
                    binding: Arc::clone(binding),
                    target: identity.target.clone(),
                },
            );
        }
    }
    DesiredState {
        assignments,
        diagnostics,
    }
}
