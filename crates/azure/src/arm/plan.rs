//! Which identity PATCHes give a machine the identities asked for. Pure: the machine's
//! current identity in, the PATCH bodies out.
//!
//! ARM merges `userAssignedIdentities` (`{}` adds, `null` removes, unnamed keys stay), so a
//! PATCH names only what changes and identities podid does not manage survive. The type must
//! agree with the result: with user-assigned identities left it is `UserAssigned` (or
//! `SystemAssigned, UserAssigned`); removing the last one is done by setting the type to
//! `None` (or `SystemAssigned`) with no map, never by a `null` for the last key. The
//! system-assigned identity is kept as it is. At most [`MAX_IDENTITIES_PER_PATCH`] keys go in
//! one PATCH.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use super::machine::{IdentityType, MachineIdentity};
use crate::resource_id::ResourceId;

/// ARM's limit of identities added plus removed in one request.
pub const MAX_IDENTITIES_PER_PATCH: usize = 150;

/// User-assigned identities to add to and remove from a machine. An identity in both is
/// added, as upstream did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdentityChange {
    pub add: BTreeSet<ResourceId>,
    pub remove: BTreeSet<ResourceId>,
}

impl IdentityChange {
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.remove.is_empty()
    }
}

/// One identity PATCH: the type to set, and the keys to add (`{}`) and remove (`null`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityPatch {
    pub identity_type: IdentityType,
    pub add: Vec<ResourceId>,
    pub remove: Vec<ResourceId>,
}

impl IdentityPatch {
    /// The request body: `{"identity": {"type", "userAssignedIdentities"?}}`.
    pub fn body(&self) -> Value {
        let mut identity = json!({ "type": self.identity_type.as_str() });
        if !self.add.is_empty() || !self.remove.is_empty() {
            let mut map = Map::new();
            for id in &self.add {
                map.insert(id.to_string(), json!({}));
            }
            for id in &self.remove {
                map.insert(id.to_string(), Value::Null);
            }
            identity["userAssignedIdentities"] = Value::Object(map);
        }
        json!({ "identity": identity })
    }
}

/// The PATCHes that apply `change` to a machine whose identity is `current`, in order; empty
/// when nothing would change. Adds go first, so the map never runs empty half-way.
pub fn plan_update(current: &MachineIdentity, change: &IdentityChange) -> Vec<IdentityPatch> {
    let existing = &current.user_assigned;
    // Removals of IDs also being added are dropped: adding wins.
    let remove: Vec<ResourceId> = existing
        .keys()
        .filter(|id| change.remove.contains(*id) && !change.add.contains(*id))
        .cloned()
        .collect();
    let add: Vec<ResourceId> = change
        .add
        .iter()
        .filter(|id| !existing.contains_key(*id))
        .cloned()
        .collect();
    let remaining = existing.len() - remove.len() + add.len();
    let system_assigned = current.identity_type.system_assigned;

    if remaining == 0 {
        let target = IdentityType {
            system_assigned,
            user_assigned: false,
        };
        if existing.is_empty() && current.identity_type == target {
            return Vec::new();
        }
        return vec![IdentityPatch {
            identity_type: target,
            add: Vec::new(),
            remove: Vec::new(),
        }];
    }

    let target = IdentityType {
        system_assigned,
        user_assigned: true,
    };
    let entries: Vec<(ResourceId, bool)> = add
        .into_iter()
        .map(|id| (id, true))
        .chain(remove.into_iter().map(|id| (id, false)))
        .collect();
    entries
        .chunks(MAX_IDENTITIES_PER_PATCH)
        .map(|chunk| {
            let (add, remove): (Vec<_>, Vec<_>) = chunk.iter().cloned().partition(|(_, a)| *a);
            IdentityPatch {
                identity_type: target,
                add: add.into_iter().map(|(id, _)| id).collect(),
                remove: remove.into_iter().map(|(id, _)| id).collect(),
            }
        })
        .collect()
}

/// The PATCHes after which the machine has exactly `desired` as user-assigned identities
/// (its system-assigned identity kept as it is).
pub fn plan_exact(current: &MachineIdentity, desired: &BTreeSet<ResourceId>) -> Vec<IdentityPatch> {
    let change = IdentityChange {
        add: desired.clone(),
        remove: current
            .user_assigned
            .keys()
            .filter(|id| !desired.contains(*id))
            .cloned()
            .collect(),
    };
    plan_update(current, &change)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The user-assigned set after `patches`, by ARM's merge rules; the reason when ARM would
    /// refuse one.
    fn apply_like_arm(
        current: &MachineIdentity,
        patches: &[IdentityPatch],
    ) -> Result<(IdentityType, BTreeSet<ResourceId>), String> {
        let mut kind = current.identity_type;
        let mut set: BTreeSet<ResourceId> = current.user_assigned.keys().cloned().collect();
        for patch in patches {
            let keys = patch.add.len() + patch.remove.len();
            if keys > MAX_IDENTITIES_PER_PATCH {
                return Err(format!("{keys} identities in one request"));
            }
            let mut seen = BTreeSet::new();
            if !patch
                .add
                .iter()
                .chain(&patch.remove)
                .all(|id| seen.insert(id))
            {
                return Err("an identity appears twice".into());
            }
            if !patch.identity_type.user_assigned {
                if keys > 0 {
                    return Err("identities given with a type without UserAssigned".into());
                }
                set.clear();
            } else {
                set.extend(patch.add.iter().cloned());
                for id in &patch.remove {
                    set.remove(id);
                }
                if set.is_empty() {
                    return Err("the last user-assigned identity removed while UserAssigned".into());
                }
            }
            kind = patch.identity_type;
        }
        Ok((kind, set))
    }

    /// A machine identity with exactly these user-assigned IDs.
    fn identity_with(
        kind: IdentityType,
        ids: impl IntoIterator<Item = ResourceId>,
    ) -> MachineIdentity {
        MachineIdentity {
            identity_type: kind,
            user_assigned: ids.into_iter().map(|id| (id, Default::default())).collect(),
            ..MachineIdentity::default()
        }
    }

    fn uami(n: usize) -> ResourceId {
        ResourceId::user_assigned_identity("sub", "rg", &format!("id-{n}"))
    }

    fn ids(ns: &[usize]) -> BTreeSet<ResourceId> {
        ns.iter().map(|n| uami(*n)).collect()
    }

    fn change(add: &[usize], remove: &[usize]) -> IdentityChange {
        IdentityChange {
            add: ids(add),
            remove: ids(remove),
        }
    }

    #[test]
    fn adding_to_a_machine_without_identities_sets_user_assigned() {
        let current = identity_with(IdentityType::NONE, []);
        let patches = plan_update(&current, &change(&[1], &[]));
        assert_eq!(patches.len(), 1);
        assert_eq!(
            patches[0].body(),
            json!({"identity": {"type": "UserAssigned", "userAssignedIdentities": {
                "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-1": {}
            }}})
        );
    }

    #[test]
    fn a_system_assigned_identity_is_kept() {
        let current = identity_with(IdentityType::SYSTEM_ASSIGNED, []);
        let patches = plan_update(&current, &change(&[1], &[]));
        assert_eq!(
            patches[0].identity_type,
            IdentityType::SYSTEM_AND_USER_ASSIGNED
        );

        let current = identity_with(IdentityType::SYSTEM_AND_USER_ASSIGNED, [uami(1)]);
        let patches = plan_update(&current, &change(&[], &[1]));
        assert_eq!(
            patches[0].body(),
            json!({"identity": {"type": "SystemAssigned"}})
        );
    }

    #[test]
    fn removing_the_last_identity_changes_the_type_instead_of_sending_null() {
        let current = identity_with(IdentityType::USER_ASSIGNED, [uami(1), uami(2)]);
        let patches = plan_update(&current, &change(&[], &[1, 2, 3]));
        assert_eq!(patches.len(), 1);
        assert_eq!(patches[0].body(), json!({"identity": {"type": "None"}}));
    }

    #[test]
    fn removing_one_of_several_sends_null_for_the_stored_key() {
        let stored = ResourceId::parse(
            "/subscriptions/SUB/resourcegroups/RG/providers/Microsoft.ManagedIdentity/userAssignedIdentities/ID-1",
        )
        .unwrap();
        let current = identity_with(IdentityType::USER_ASSIGNED, [stored, uami(2)]);
        let patches = plan_update(&current, &change(&[], &[1]));
        assert_eq!(
            patches[0].body(),
            json!({"identity": {"type": "UserAssigned", "userAssignedIdentities": {
                "/subscriptions/SUB/resourceGroups/RG/providers/Microsoft.ManagedIdentity/userAssignedIdentities/ID-1": null
            }}})
        );
    }

    #[test]
    fn nothing_to_do_means_no_patch() {
        let current = identity_with(IdentityType::USER_ASSIGNED, [uami(1)]);
        assert!(plan_update(&current, &change(&[1], &[2])).is_empty());
        assert!(plan_update(&current, &IdentityChange::default()).is_empty());
        let bare = identity_with(IdentityType::NONE, []);
        assert!(plan_update(&bare, &change(&[], &[1])).is_empty());
        let system = identity_with(IdentityType::SYSTEM_ASSIGNED, []);
        assert!(plan_update(&system, &change(&[], &[1])).is_empty());
    }

    #[test]
    fn an_identity_both_added_and_removed_is_added() {
        let current = identity_with(IdentityType::USER_ASSIGNED, [uami(1)]);
        assert!(plan_update(&current, &change(&[1], &[1])).is_empty());
        let bare = identity_with(IdentityType::NONE, []);
        let patches = plan_update(&bare, &change(&[2], &[2]));
        assert_eq!(patches[0].add, vec![uami(2)]);
    }

    #[test]
    fn a_stale_type_is_corrected_when_nothing_is_left() {
        let stale = identity_with(IdentityType::USER_ASSIGNED, []);
        let patches = plan_update(&stale, &IdentityChange::default());
        assert_eq!(patches[0].body(), json!({"identity": {"type": "None"}}));
    }

    #[test]
    fn large_changes_are_split_adds_first() {
        let current = identity_with(IdentityType::USER_ASSIGNED, (0..200).map(uami));
        let patches = plan_update(
            &current,
            &IdentityChange {
                add: (1000..1100).map(uami).collect(),
                remove: (0..200).map(uami).collect(),
            },
        );
        assert_eq!(
            patches
                .iter()
                .map(|p| (p.add.len(), p.remove.len()))
                .collect::<Vec<_>>(),
            vec![(100, 50), (0, 150)]
        );
        let (kind, set) = apply_like_arm(&current, &patches).unwrap();
        assert_eq!(kind, IdentityType::USER_ASSIGNED);
        assert_eq!(set, (1000..1100).map(uami).collect());
    }

    #[test]
    fn replacing_a_full_batch_never_empties_the_map_half_way() {
        let current = identity_with(
            IdentityType::USER_ASSIGNED,
            (0..MAX_IDENTITIES_PER_PATCH).map(uami),
        );
        let desired: BTreeSet<ResourceId> = (1000..1010).map(uami).collect();
        let patches = plan_exact(&current, &desired);
        assert_eq!(
            patches
                .iter()
                .map(|p| (p.add.len(), p.remove.len()))
                .collect::<Vec<_>>(),
            vec![(10, 140), (0, 10)]
        );
        assert_eq!(apply_like_arm(&current, &patches).unwrap().1, desired);
    }

    #[test]
    fn plan_exact_reaches_the_desired_set() {
        let current = identity_with(IdentityType::SYSTEM_AND_USER_ASSIGNED, [uami(1), uami(2)]);
        let patches = plan_exact(&current, &ids(&[2, 3]));
        assert_eq!(patches.len(), 1);
        assert_eq!(
            (patches[0].add.clone(), patches[0].remove.clone()),
            (vec![uami(3)], vec![uami(1)])
        );
        let (kind, set) = apply_like_arm(&current, &patches).unwrap();
        assert_eq!(kind, IdentityType::SYSTEM_AND_USER_ASSIGNED);
        assert_eq!(set, ids(&[2, 3]));
        let cleared = plan_exact(&current, &BTreeSet::new());
        assert_eq!(
            cleared[0].body(),
            json!({"identity": {"type": "SystemAssigned"}})
        );
    }

    fn any_type() -> impl Strategy<Value = IdentityType> {
        (any::<bool>(), any::<bool>()).prop_map(|(system_assigned, user_assigned)| IdentityType {
            system_assigned,
            user_assigned,
        })
    }

    /// Small ID pools make overlaps likely; large ones cross the 150 limit.
    fn id_set(pool: usize, max: usize) -> impl Strategy<Value = BTreeSet<ResourceId>> {
        proptest::collection::btree_set(0..pool, 0..max)
            .prop_map(|ns| ns.into_iter().map(uami).collect())
    }

    fn scenario() -> impl Strategy<Value = (IdentityType, BTreeSet<ResourceId>, IdentityChange)> {
        prop_oneof![Just((8usize, 8usize)), Just((400, 320))].prop_flat_map(|(pool, max)| {
            (
                any_type(),
                id_set(pool, max),
                id_set(pool, max),
                id_set(pool, max),
                any::<bool>(),
            )
                .prop_map(|(kind, existing, add, mut remove, replace_all)| {
                    // A machine with user-assigned identities says so in its type.
                    let kind = IdentityType {
                        user_assigned: kind.user_assigned || !existing.is_empty(),
                        ..kind
                    };
                    // Replacing every identity is where a badly ordered split empties the map.
                    if replace_all {
                        remove.extend(existing.iter().cloned());
                    }
                    (kind, existing, IdentityChange { add, remove })
                })
        })
    }

    proptest! {
        #[test]
        fn every_patch_is_valid_and_the_result_is_the_intent((kind, existing, change) in scenario()) {
            let current = identity_with(kind, existing.iter().cloned());
            let patches = plan_update(&current, &change);
            let (final_kind, final_set) = apply_like_arm(&current, &patches).map_err(TestCaseError::fail)?;

            let expected: BTreeSet<ResourceId> = existing
                .iter()
                .filter(|id| !change.remove.contains(*id))
                .chain(change.add.iter())
                .cloned()
                .collect();
            prop_assert_eq!(&final_set, &expected);
            prop_assert_eq!(final_kind.system_assigned, kind.system_assigned);
            prop_assert_eq!(final_kind.user_assigned, !expected.is_empty());

            // Minimal: no patch without a change, and no more patches than the limit needs.
            let delta = expected.difference(&existing).count() + existing.difference(&expected).count();
            let needed = if expected.is_empty() {
                usize::from(!existing.is_empty() || kind.user_assigned)
            } else {
                delta.div_ceil(MAX_IDENTITIES_PER_PATCH)
            };
            prop_assert_eq!(patches.len(), needed);
        }

        #[test]
        fn plan_exact_always_ends_at_the_desired_set(
            (kind, existing, change) in scenario(),
        ) {
            let current = identity_with(kind, existing.iter().cloned());
            let desired = change.add;
            let patches = plan_exact(&current, &desired);
            let (final_kind, final_set) = apply_like_arm(&current, &patches).map_err(TestCaseError::fail)?;
            prop_assert_eq!(&final_set, &desired);
            prop_assert_eq!(final_kind.system_assigned, kind.system_assigned);
            prop_assert!(plan_exact(&identity_with(final_kind, final_set), &desired).is_empty());
        }
    }
}
