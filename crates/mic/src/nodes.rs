//! Nodes to machines: the VM or VM scale set whose identities a node's pods use. Every node of
//! a scale set maps to the scale set, so they share one machine.

use std::collections::BTreeMap;

use podid_azure::arm::MachineId;
use podid_azure::resource_id::ResourceId;

use crate::NodeInfo;
use crate::diagnostics::{Diagnostic, NodeProblem};

/// The known nodes and the machine of each (none when the provider ID names none).
#[derive(Debug, Clone, Default)]
pub struct NodeIndex {
    machines: BTreeMap<String, Option<MachineId>>,
}

impl NodeIndex {
    /// Indexes `nodes`; a diagnostic for each node without a machine.
    ///
    /// **deviation:** the machine is the one the provider ID names, its subscription and
    /// resource group included; upstream took both from azure.json and used the node name as
    /// the VM name, which fails for node pools outside the configured resource group.
    pub fn new(nodes: &[NodeInfo]) -> (Self, Vec<Diagnostic>) {
        let mut diagnostics = Vec::new();
        let machines = nodes
            .iter()
            .map(|node| {
                let machine = machine_of(node).map_err(|problem| {
                    diagnostics.push(Diagnostic::Node {
                        node: node.name.clone(),
                        problem,
                    })
                });
                (node.name.clone(), machine.ok())
            })
            .collect();
        (Self { machines }, diagnostics)
    }

    /// Whether the node exists.
    pub fn contains(&self, node: &str) -> bool {
        self.machines.contains_key(node)
    }

    /// The node's machine; `None` for an unknown node or one without a machine.
    pub fn machine(&self, node: &str) -> Option<&MachineId> {
        self.machines.get(node).and_then(Option::as_ref)
    }
}

fn machine_of(node: &NodeInfo) -> Result<MachineId, NodeProblem> {
    let provider_id = node
        .provider_id
        .as_deref()
        .filter(|id| !id.is_empty())
        .ok_or(NodeProblem::NoProviderId)?;
    let id = ResourceId::from_provider_id(provider_id).map_err(|error| {
        NodeProblem::UnparsableProviderId {
            provider_id: provider_id.to_owned(),
            reason: error.reason,
        }
    })?;
    MachineId::from_resource_id(&id).ok_or_else(|| NodeProblem::NotAMachine {
        provider_id: provider_id.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use podid_azure::arm::MachineKind;

    use super::*;

    const RG: &str = "/subscriptions/sub/resourceGroups/MC_rg";

    fn node(name: &str, provider_id: Option<&str>) -> NodeInfo {
        NodeInfo {
            name: name.into(),
            provider_id: provider_id.map(Into::into),
        }
    }

    #[test]
    fn scale_set_nodes_share_their_scale_set() {
        let (index, diagnostics) = NodeIndex::new(&[
            node(
                "vmss000000",
                Some(&format!(
                    "azure://{RG}/providers/Microsoft.Compute/virtualMachineScaleSets/pool0/virtualMachines/0"
                )),
            ),
            node(
                "vmss000001",
                Some(&format!(
                    "azure://{RG}/providers/Microsoft.Compute/virtualMachineScaleSets/POOL0/virtualMachines/1"
                )),
            ),
        ]);
        assert!(diagnostics.is_empty());
        let first = index.machine("vmss000000").unwrap();
        assert_eq!(first.kind(), MachineKind::VirtualMachineScaleSet);
        assert_eq!(first.name(), "pool0");
        // Resource IDs compare ignoring case, so both nodes are on one machine.
        assert_eq!(Some(first), index.machine("vmss000001"));
    }

    #[test]
    fn a_vm_node_is_its_vm() {
        let (index, _) = NodeIndex::new(&[node(
            "aks-nodepool1-0",
            Some(&format!(
                "azure://{RG}/providers/Microsoft.Compute/virtualMachines/aks-nodepool1-0"
            )),
        )]);
        let machine = index.machine("aks-nodepool1-0").unwrap();
        assert_eq!(machine.kind(), MachineKind::VirtualMachine);
        assert_eq!(
            machine.to_string(),
            format!("{RG}/providers/Microsoft.Compute/virtualMachines/aks-nodepool1-0")
        );
    }

    #[test]
    fn nodes_without_a_machine_are_known_and_diagnosed() {
        let (index, diagnostics) = NodeIndex::new(&[
            node("none", None),
            node("empty", Some("")),
            node("kind", Some("kind://docker/kind/kind-worker")),
            node(
                "disk",
                Some(&format!(
                    "azure://{RG}/providers/Microsoft.Compute/disks/d0"
                )),
            ),
        ]);
        for name in ["none", "empty", "kind", "disk"] {
            assert!(index.contains(name));
            assert_eq!(index.machine(name), None);
        }
        assert!(!index.contains("elsewhere"));
        let problems: Vec<_> = diagnostics
            .into_iter()
            .map(|d| match d {
                Diagnostic::Node { node, problem } => (node, problem),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(
            problems,
            vec![
                ("none".into(), NodeProblem::NoProviderId),
                ("empty".into(), NodeProblem::NoProviderId),
                (
                    "kind".into(),
                    NodeProblem::UnparsableProviderId {
                        provider_id: "kind://docker/kind/kind-worker".into(),
                        reason: "a provider ID starts with azure://",
                    }
                ),
                (
                    "disk".into(),
                    NodeProblem::NotAMachine {
                        provider_id: format!("azure://{RG}/providers/Microsoft.Compute/disks/d0"),
                    }
                ),
            ]
        );
    }
}
