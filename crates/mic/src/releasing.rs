//! Identities an AzureAssignedIdentity no longer uses but MIC still has to take off a machine.
//!
//! Ownership of an identity on a machine is recorded by the AzureAssignedIdentities that
//! confirmed it. When one is rewritten in place for another identity or node (same name), the
//! record of the old one would vanish with the rewrite and the identity would stay on the
//! machine for ever; so the rewrite carries it in an annotation until the old identity is gone
//! or no longer MIC's to remove. Upstream removed it in the same cycle and lost track of it
//! when that removal failed.

use podid_azure::resource_id::ResourceId;

/// Annotation on an AzureAssignedIdentity listing, one per line, `<node> <identity resource ID>`
/// pairs still to be released. Upstream ignores it.
pub const RELEASING_ANNOTATION: &str = "podid.aadpodidentity.k8s.io/releasing";

/// An identity to release from the machine of a node.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Releasing {
    pub node: String,
    pub resource_id: ResourceId,
}

/// Reads the annotation; lines that do not parse are dropped (nothing of MIC's can be
/// released through them).
pub fn parse_releasing(value: &str) -> Vec<Releasing> {
    value
        .lines()
        .filter_map(|line| {
            let (node, id) = line.trim().split_once(' ')?;
            Some(Releasing {
                node: node.to_owned(),
                resource_id: ResourceId::parse(id.trim()).ok()?,
            })
        })
        .collect()
}

/// The annotation value for `entries`, sorted and without duplicates; `None` when empty (the
/// annotation is then removed).
pub fn format_releasing(entries: &[Releasing]) -> Option<String> {
    let mut entries = entries.to_vec();
    entries.sort();
    entries.dedup();
    (!entries.is_empty()).then(|| {
        entries
            .iter()
            .map(|entry| format!("{} {}", entry.node, entry.resource_id))
            .collect::<Vec<_>>()
            .join("\n")
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn uami(name: &str) -> ResourceId {
        ResourceId::user_assigned_identity("sub", "rg", name)
    }

    #[test]
    fn entries_round_trip_sorted_and_unique() {
        let entries = vec![
            Releasing {
                node: "node-1".into(),
                resource_id: uami("b"),
            },
            Releasing {
                node: "node-0".into(),
                resource_id: uami("a"),
            },
            Releasing {
                node: "node-1".into(),
                resource_id: uami("B"),
            },
        ];
        let text = format_releasing(&entries).unwrap();
        assert_eq!(
            text,
            "node-0 /subscriptions/sub/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/a\n\
             node-1 /subscriptions/sub/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/b"
        );
        assert_eq!(
            parse_releasing(&text),
            entries[..2].iter().rev().cloned().collect::<Vec<_>>()
        );
        assert_eq!(format_releasing(&[]), None);
    }

    #[test]
    fn unreadable_lines_are_dropped() {
        assert_eq!(parse_releasing("node-0\nnode-1 not-an-id\n\n"), vec![]);
    }

    proptest! {
        #[test]
        fn any_entries_survive_a_round_trip(
            raw in proptest::collection::vec(("[a-z0-9-]{1,12}", "[a-zA-Z0-9_-]{1,20}"), 0..6),
        ) {
            let entries: Vec<Releasing> = raw
                .iter()
                .map(|(node, name)| Releasing { node: node.clone(), resource_id: uami(name) })
                .collect();
            let mut expected = entries.clone();
            expected.sort();
            expected.dedup();
            let parsed = format_releasing(&entries).map(|text| parse_releasing(&text)).unwrap_or_default();
            prop_assert_eq!(parsed, expected);
        }
    }
}
