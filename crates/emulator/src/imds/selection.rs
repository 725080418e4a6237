//! Which identity a token request gets (azure-wire.md §1.3), from the identities effective on
//! the machine at the emulator's current time.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use super::admission::Selector;
use crate::armid;
use crate::world::{IdentitySet, SystemAssignedIdentity, UserAssignedIdentity};

/// An identity IMDS serves on the machine right now.
#[derive(Debug, Clone)]
pub struct Effective<'w> {
    pub identity: &'w UserAssignedIdentity,
    /// Differs between two assignments of the same identity, so a re-assignment never reuses a
    /// token cached for an earlier one.
    pub assignment: String,
}

#[derive(Debug, Clone)]
pub enum Chosen<'w> {
    System(&'w SystemAssignedIdentity),
    User(Effective<'w>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelectionError {
    IdentityNotFound,
    MultipleUserAssigned,
}

impl SelectionError {
    pub fn description(self) -> &'static str {
        match self {
            SelectionError::IdentityNotFound => "Identity not found",
            SelectionError::MultipleUserAssigned => {
                "Multiple user assigned identities exist, please specify the clientId / \
                 resourceId of the identity in the token request"
            }
        }
    }
}

/// User-assigned identities IMDS serves at `now`: assigned ones whose propagation delay has
/// passed, plus removed ones still inside their revocation delay — and in both cases only while
/// the identity still exists in the generation that was assigned (a deleted-and-recreated
/// identity is a different principal, so the old assignment is dead).
pub fn effective_user_assigned<'w>(
    identities: &'w BTreeMap<String, UserAssignedIdentity>,
    set: &IdentitySet,
    now: SystemTime,
) -> Vec<Effective<'w>> {
    let live = |key: &str, generation: u64| {
        identities
            .get(key)
            .filter(|identity| identity.generation == generation)
    };
    let assigned = set.user_assigned.iter().filter_map(|(key, a)| {
        let identity = live(key, a.generation).filter(|_| a.visible_from <= now)?;
        Some(Effective {
            identity,
            assignment: format!("{}@{}", a.generation, unix_nanos(a.visible_from)),
        })
    });
    let revoked = set.revoked.iter().filter_map(|(key, r)| {
        if set.user_assigned.contains_key(key) || now >= r.visible_until {
            return None;
        }
        Some(Effective {
            identity: live(key, r.generation)?,
            assignment: format!("{}@revoked", r.generation),
        })
    });
    assigned.chain(revoked).collect()
}

pub fn select<'w>(
    system: Option<&'w SystemAssignedIdentity>,
    user: Vec<Effective<'w>>,
    selector: Option<&Selector>,
) -> Result<Chosen<'w>, SelectionError> {
    let Some(selector) = selector else {
        if let Some(system) = system {
            return Ok(Chosen::System(system));
        }
        let mut user = user;
        return match (user.pop(), user.is_empty()) {
            (Some(only), true) => Ok(Chosen::User(only)),
            (Some(_), false) => Err(SelectionError::MultipleUserAssigned),
            (None, _) => Err(SelectionError::IdentityNotFound),
        };
    };
    let matches = |e: &Effective<'_>| match selector {
        Selector::Client(id) => e.identity.client_id.eq_ignore_ascii_case(id.trim()),
        Selector::Object(id) => e.identity.principal_id.eq_ignore_ascii_case(id.trim()),
        Selector::Resource(id) => e.identity.id.key() == armid::normalize(id.trim()),
    };
    user.into_iter()
        .find(matches)
        .map(Chosen::User)
        .ok_or(SelectionError::IdentityNotFound)
}

fn unix_nanos(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::armid::ArmId;
    use crate::world::{AssignedIdentity, RevokedIdentity};

    const RG: &str = "/subscriptions/S/resourceGroups/RG/providers/Microsoft.ManagedIdentity/userAssignedIdentities";

    fn uami(name: &str, generation: u64) -> UserAssignedIdentity {
        UserAssignedIdentity {
            id: ArmId::new(&format!("{RG}/{name}")),
            subscription: "S".into(),
            resource_group: "RG".into(),
            name: name.into(),
            location: "eastus".into(),
            client_id: format!("{name}-CLIENT"),
            principal_id: format!("{name}-OBJECT"),
            tenant_id: "t".into(),
            generation,
        }
    }

    fn identities(list: &[UserAssignedIdentity]) -> BTreeMap<String, UserAssignedIdentity> {
        list.iter()
            .map(|i| (i.id.key().to_string(), i.clone()))
            .collect()
    }

    fn assign(
        set: &mut IdentitySet,
        i: &UserAssignedIdentity,
        generation: u64,
        visible_from: SystemTime,
    ) {
        set.user_assigned.insert(
            i.id.key().to_string(),
            AssignedIdentity {
                id: i.id.clone(),
                generation,
                visible_from,
            },
        );
    }

    fn system() -> SystemAssignedIdentity {
        SystemAssignedIdentity {
            principal_id: "sys".into(),
            tenant_id: "t".into(),
        }
    }

    fn names(list: &[Effective<'_>]) -> Vec<String> {
        list.iter().map(|e| e.identity.name.clone()).collect()
    }

    #[test]
    fn propagation_revocation_and_generation_decide_what_is_effective() {
        let now = SystemTime::now();
        let all = identities(&[
            uami("a", 1),
            uami("b", 1),
            uami("c", 2),
            uami("d", 1),
            uami("e", 1),
        ]);
        let mut set = IdentitySet::default();
        assign(&mut set, &all[&format!("{RG}/a").to_lowercase()], 1, now);
        assign(
            &mut set,
            &all[&format!("{RG}/b").to_lowercase()],
            1,
            now + Duration::from_secs(30),
        );
        // c was deleted and recreated after generation 1 was assigned.
        assign(&mut set, &all[&format!("{RG}/c").to_lowercase()], 1, now);
        for (name, until) in [("d", now + Duration::from_secs(5)), ("e", now)] {
            let id = ArmId::new(&format!("{RG}/{name}"));
            set.revoked.insert(
                id.key().to_string(),
                RevokedIdentity {
                    id,
                    generation: 1,
                    visible_until: until,
                },
            );
        }
        assert_eq!(names(&effective_user_assigned(&all, &set, now)), ["a", "d"]);
        let later = now + Duration::from_secs(30);
        assert_eq!(
            names(&effective_user_assigned(&all, &set, later)),
            ["a", "b"]
        );
    }

    /// The chosen identity's name (`system` for the system-assigned one).
    fn chosen(result: Result<Chosen<'_>, SelectionError>) -> Result<String, SelectionError> {
        result.map(|c| match c {
            Chosen::System(_) => "system".to_string(),
            Chosen::User(e) => e.identity.name.clone(),
        })
    }

    #[test]
    fn the_selection_table() {
        let (a, b) = (uami("a", 1), uami("b", 1));
        fn eff<'w>(list: &[&'w UserAssignedIdentity]) -> Vec<Effective<'w>> {
            list.iter()
                .map(|i| Effective {
                    identity: i,
                    assignment: "1".into(),
                })
                .collect()
        }
        let sys = system();
        assert_eq!(
            chosen(select(Some(&sys), eff(&[&a, &b]), None)),
            Ok("system".into())
        );
        assert_eq!(chosen(select(None, eff(&[&a]), None)), Ok("a".into()));
        assert_eq!(
            chosen(select(None, eff(&[&a, &b]), None)),
            Err(SelectionError::MultipleUserAssigned)
        );
        assert_eq!(
            chosen(select(None, eff(&[]), None)),
            Err(SelectionError::IdentityNotFound)
        );
        let pick = |s: Selector| chosen(select(Some(&sys), eff(&[&a, &b]), Some(&s)));
        assert_eq!(pick(Selector::Client("b-client".into())), Ok("b".into()));
        assert_eq!(pick(Selector::Object("A-OBJECT".into())), Ok("a".into()));
        assert_eq!(
            pick(Selector::Resource(format!("{RG}/B/").to_uppercase())),
            Ok("b".into())
        );
        assert_eq!(
            pick(Selector::Client("nope".into())),
            Err(SelectionError::IdentityNotFound)
        );
        assert_eq!(
            pick(Selector::Object("sys".into())),
            Err(SelectionError::IdentityNotFound)
        );
    }
}
