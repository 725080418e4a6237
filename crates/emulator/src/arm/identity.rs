//! The `identity` object of VMs and scale sets: parsing request bodies, validating a PATCH or
//! PUT against the current identities (azure-wire.md §3.4), and applying the accepted change
//! when its operation completes. Pure functions; the handlers do the I/O.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::Value;

use crate::armid::{ArmId, normalize};
use crate::world::{AssignedIdentity, IdentitySet, RevokedIdentity, SystemAssignedIdentity};

/// The identity `type` enum. Requests may use any case and the no-space form; output is always
/// [`IdentityType::canonical`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityType {
    None,
    SystemAssigned,
    UserAssigned,
    SystemAndUserAssigned,
}

impl IdentityType {
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts: Vec<String> = text
            .split(',')
            .map(|p| p.trim().to_ascii_lowercase())
            .collect();
        parts.sort();
        match parts
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .as_slice()
        {
            ["none"] => Some(Self::None),
            ["systemassigned"] => Some(Self::SystemAssigned),
            ["userassigned"] => Some(Self::UserAssigned),
            ["systemassigned", "userassigned"] => Some(Self::SystemAndUserAssigned),
            _ => None,
        }
    }

    pub fn of(system_assigned: bool, user_assigned: bool) -> Self {
        match (system_assigned, user_assigned) {
            (false, false) => Self::None,
            (true, false) => Self::SystemAssigned,
            (false, true) => Self::UserAssigned,
            (true, true) => Self::SystemAndUserAssigned,
        }
    }

    pub fn canonical(self) -> &'static str {
        match self {
            Self::None => "None",
            Self::SystemAssigned => "SystemAssigned",
            Self::UserAssigned => "UserAssigned",
            Self::SystemAndUserAssigned => "SystemAssigned, UserAssigned",
        }
    }

    pub fn has_system(self) -> bool {
        matches!(self, Self::SystemAssigned | Self::SystemAndUserAssigned)
    }

    pub fn has_user(self) -> bool {
        matches!(self, Self::UserAssigned | Self::SystemAndUserAssigned)
    }
}

/// A request's `userAssignedIdentities` entry: `{…}` assigns, `null` removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: String,
    pub assign: bool,
}

/// The `identity` of a request body, with map entries in request order and duplicates kept
/// (serde maps would silently drop an exact duplicate key).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdentityRequest {
    pub kind: Option<String>,
    pub entries: Vec<Entry>,
}

impl IdentityRequest {
    /// IDs the request assigns (`{}`), held already or not.
    pub fn assigned(&self) -> impl Iterator<Item = &str> {
        self.entries
            .iter()
            .filter(|e| e.assign)
            .map(|e| e.id.as_str())
    }
}

impl<'de> Deserialize<'de> for IdentityRequest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Raw {
            #[serde(rename = "type", default)]
            kind: Option<String>,
            #[serde(rename = "userAssignedIdentities", default)]
            entries: Option<Entries>,
        }
        let raw = Raw::deserialize(deserializer)?;
        Ok(IdentityRequest {
            kind: raw.kind,
            entries: raw.entries.map(|e| e.0).unwrap_or_default(),
        })
    }
}

struct Entries(Vec<Entry>);

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntriesVisitor;
        impl<'de> Visitor<'de> for EntriesVisitor {
            type Value = Entries;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object mapping identity IDs to {} or null")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries, A::Error> {
                let mut entries = Vec::new();
                while let Some((id, value)) = map.next_entry::<String, Value>()? {
                    let assign = match value {
                        Value::Null => false,
                        Value::Object(_) => true,
                        other => {
                            return Err(serde::de::Error::custom(format!(
                                "userAssignedIdentities['{id}'] must be {{}} or null, not {other}"
                            )));
                        }
                    };
                    entries.push(Entry { id, assign });
                }
                Ok(Entries(entries))
            }
            fn visit_unit<E>(self) -> Result<Entries, E> {
                Ok(Entries(Vec::new()))
            }
        }
        deserializer.deserialize_any(EntriesVisitor)
    }
}

/// What an accepted request changes, applied when its operation completes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdentityChange {
    /// `Some(true)` turns the system-assigned identity on, `Some(false)` off.
    pub system_assigned: Option<bool>,
    /// Drop every user-assigned identity not in `assign` (type `None`/`SystemAssigned`, PUT).
    pub replace_all: bool,
    /// Keys ([`normalize`]d) to remove.
    pub remove: Vec<String>,
    /// IDs to assign, as the request spelled them.
    pub assign: Vec<String>,
}

/// Why a request was refused; the handler turns it into an ARM error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    BadType(String),
    Duplicate(String),
    IdsWithoutUserType(IdentityType),
    LastIdentityRemoved,
    TooMany(usize),
    Missing(String),
}

/// Whether PATCH merges into the stored map or PUT replaces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Merge,
    Replace,
}

/// Whether the machine holds the identity now living under `key` (not one deleted since, whose
/// assignment is dead). `live` gives an identity's current generation, `None` if it does not
/// exist.
fn holds_live(current: &IdentitySet, key: &str, live: &impl Fn(&str) -> Option<u64>) -> bool {
    current
        .user_assigned
        .get(key)
        .is_some_and(|a| live(key) == Some(a.generation))
}

/// The IDs a request really adds: `{}` entries for identities the machine does not already
/// hold. ARM's linked `assign/action` check and its per-request limit count only these (and,
/// for the limit, the removals), not identities a request repeats.
pub fn newly_assigned<'r>(
    current: &IdentitySet,
    request: &'r IdentityRequest,
    live: &impl Fn(&str) -> Option<u64>,
) -> Vec<&'r str> {
    request
        .assigned()
        .filter(|id| !holds_live(current, &normalize(id), live))
        .collect()
}

/// Validates a request against the current identities (the order mirrors CRP: type, duplicates,
/// type/map consistency, per-request limit, existence, the resulting map). `live` gives an
/// identity's current generation, `None` if it does not exist.
pub fn plan(
    current: &IdentitySet,
    request: &IdentityRequest,
    mode: Mode,
    limit: usize,
    live: impl Fn(&str) -> Option<u64>,
) -> Result<IdentityChange, Refusal> {
    let current_type = IdentityType::of(
        current.system_assigned.is_some(),
        !current.user_assigned.is_empty(),
    );
    let kind = match &request.kind {
        Some(text) => IdentityType::parse(text).ok_or_else(|| Refusal::BadType(text.clone()))?,
        None if mode == Mode::Replace => IdentityType::None,
        None => current_type,
    };
    let mut seen = BTreeMap::new();
    for entry in &request.entries {
        if seen.insert(normalize(&entry.id), ()).is_some() {
            return Err(Refusal::Duplicate(entry.id.clone()));
        }
    }
    if !kind.has_user() && !request.entries.is_empty() {
        return Err(Refusal::IdsWithoutUserType(kind));
    }
    let system_assigned =
        (kind.has_system() != current_type.has_system()).then_some(kind.has_system());
    if !kind.has_user() {
        return Ok(IdentityChange {
            system_assigned,
            replace_all: true,
            ..Default::default()
        });
    }
    let (assign, remove): (Vec<&Entry>, Vec<&Entry>) = match mode {
        Mode::Merge => request.entries.iter().partition(|e| e.assign),
        // PUT: nulls mean nothing; everything not listed goes.
        Mode::Replace => (
            request.entries.iter().filter(|e| e.assign).collect(),
            Vec::new(),
        ),
    };
    let added = newly_assigned(current, request, &live).len();
    let removed = match mode {
        Mode::Merge => remove
            .iter()
            .filter(|e| current.user_assigned.contains_key(&normalize(&e.id)))
            .count(),
        Mode::Replace => {
            let wanted: BTreeMap<String, ()> =
                assign.iter().map(|e| (normalize(&e.id), ())).collect();
            current
                .user_assigned
                .keys()
                .filter(|k| !wanted.contains_key(*k))
                .count()
        }
    };
    let changed = added + removed;
    if changed > limit {
        return Err(Refusal::TooMany(changed));
    }
    if let Some(missing) = assign.iter().find(|e| live(&normalize(&e.id)).is_none()) {
        return Err(Refusal::Missing(missing.id.clone()));
    }
    let remaining = match mode {
        Mode::Merge => {
            let removed: Vec<String> = remove.iter().map(|e| normalize(&e.id)).collect();
            let kept = current
                .user_assigned
                .keys()
                .filter(|k| !removed.contains(k))
                .count();
            // Duplicates are refused above, so no entry is both removed and assigned.
            kept + assign
                .iter()
                .filter(|e| !current.user_assigned.contains_key(&normalize(&e.id)))
                .count()
        }
        Mode::Replace => assign.len(),
    };
    if remaining == 0 {
        return Err(Refusal::LastIdentityRemoved);
    }
    Ok(IdentityChange {
        system_assigned,
        replace_all: mode == Mode::Replace,
        remove: remove.iter().map(|e| normalize(&e.id)).collect(),
        assign: assign.iter().map(|e| e.id.clone()).collect(),
    })
}

/// When identity changes become visible to IMDS.
#[derive(Debug, Clone, Copy)]
pub struct Visibility {
    pub now: SystemTime,
    pub propagation: Duration,
    pub revocation: Duration,
}

/// Applies an accepted change. `live_generation` gives the current generation of a
/// user-assigned identity (by key); a newly enabled system-assigned identity gets
/// `new_principal`. Identities removed go to `revoked` until the revocation delay passes;
/// identities kept with a live generation keep their entry untouched.
pub fn apply(
    set: &mut IdentitySet,
    change: &IdentityChange,
    live_generation: impl Fn(&str) -> Option<u64>,
    visibility: Visibility,
    new_principal: impl FnOnce() -> SystemAssignedIdentity,
) {
    match change.system_assigned {
        Some(true) if set.system_assigned.is_none() => set.system_assigned = Some(new_principal()),
        Some(false) => set.system_assigned = None,
        _ => {}
    }
    let assigned: BTreeMap<String, &String> =
        change.assign.iter().map(|id| (normalize(id), id)).collect();
    let leaving: Vec<String> = set
        .user_assigned
        .keys()
        .filter(|k| !assigned.contains_key(*k) && (change.replace_all || change.remove.contains(k)))
        .cloned()
        .collect();
    for key in leaving {
        if let Some(old) = set.user_assigned.remove(&key) {
            set.revoked.insert(
                key,
                RevokedIdentity {
                    id: old.id,
                    generation: old.generation,
                    visible_until: visibility.now + visibility.revocation,
                },
            );
        }
    }
    for (key, id) in assigned {
        let generation = live_generation(&key).unwrap_or(0);
        let current = set.user_assigned.get(&key).map(|a| a.generation);
        if current == Some(generation) {
            continue;
        }
        let id = set
            .user_assigned
            .get(&key)
            .map_or_else(|| ArmId::new(id), |a| a.id.clone());
        set.revoked.remove(&key);
        set.user_assigned.insert(
            key,
            AssignedIdentity {
                id,
                generation,
                visible_from: visibility.now + visibility.propagation,
            },
        );
    }
}

/// Removes one user-assigned identity out of band (the admin API), with the revocation delay.
pub fn revoke_one(set: &mut IdentitySet, key: &str, visible_until: SystemTime) -> bool {
    match set.user_assigned.remove(key) {
        Some(old) => {
            set.revoked.insert(
                key.to_string(),
                RevokedIdentity {
                    id: old.id,
                    generation: old.generation,
                    visible_until,
                },
            );
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const P: &str = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/";

    fn id(name: &str) -> String {
        format!("{P}{name}")
    }

    fn set(system: bool, names: &[&str]) -> IdentitySet {
        let mut s = IdentitySet::default();
        if system {
            s.system_assigned = Some(sa("old"));
        }
        for n in names {
            let id = ArmId::new(&id(n));
            s.user_assigned.insert(
                id.key().to_string(),
                AssignedIdentity {
                    id,
                    generation: 1,
                    visible_from: SystemTime::UNIX_EPOCH,
                },
            );
        }
        s
    }

    fn sa(principal: &str) -> SystemAssignedIdentity {
        SystemAssignedIdentity {
            principal_id: principal.into(),
            tenant_id: "t".into(),
        }
    }

    fn request(json: &str) -> IdentityRequest {
        serde_json::from_str(json).expect("valid request")
    }

    fn run(current: &IdentitySet, json: &str) -> Result<IdentitySet, Refusal> {
        let change = plan(current, &request(json), Mode::Merge, 150, |_| Some(1))?;
        let mut next = current.clone();
        let vis = Visibility {
            now: SystemTime::UNIX_EPOCH,
            propagation: Duration::ZERO,
            revocation: Duration::ZERO,
        };
        apply(&mut next, &change, |_| Some(1), vis, || sa("new"));
        Ok(next)
    }

    fn names(s: &IdentitySet) -> Vec<String> {
        s.user_assigned
            .values()
            .map(|a| {
                a.id.as_str()
                    .rsplit('/')
                    .next()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect()
    }

    #[test]
    fn type_spellings_normalise_to_the_canonical_form() {
        for t in [
            "SystemAssigned,UserAssigned",
            "userassigned, SYSTEMASSIGNED",
            "SystemAssigned, UserAssigned",
        ] {
            assert_eq!(
                IdentityType::parse(t).map(IdentityType::canonical),
                Some("SystemAssigned, UserAssigned")
            );
        }
        assert_eq!(IdentityType::parse("none"), Some(IdentityType::None));
        assert_eq!(IdentityType::parse("Managed"), None);
    }

    #[test]
    fn merge_adds_removes_and_keeps_unmentioned_keys() {
        let next = run(
            &set(false, &["a", "b"]),
            &format!(
                r#"{{"type":"UserAssigned","userAssignedIdentities":{{"{}":{{}},"{}":null}}}}"#,
                id("c"),
                id("A").to_lowercase()
            ),
        )
        .expect("ok");
        assert_eq!(names(&next), ["b", "c"]);
        assert!(next.revoked.contains_key(&normalize(&id("a"))));
    }

    #[test]
    fn the_type_table_holds() {
        // keep SA while adding a UAMI
        let next = run(&set(true, &[]), &format!(r#"{{"type":"SystemAssigned,UserAssigned","userAssignedIdentities":{{"{}":{{}}}}}}"#, id("a"))).expect("ok");
        assert_eq!(
            next.system_assigned
                .as_ref()
                .map(|s| s.principal_id.as_str()),
            Some("old")
        );
        assert_eq!(names(&next), ["a"]);
        // UserAssigned drops SA
        let next = run(&set(true, &["a"]), r#"{"type":"UserAssigned"}"#).expect("ok");
        assert!(next.system_assigned.is_none());
        assert_eq!(names(&next), ["a"]);
        // SystemAssigned clears the map and mints a principal
        let next = run(&set(false, &["a", "b"]), r#"{"type":"SystemAssigned"}"#).expect("ok");
        assert_eq!(
            next.system_assigned
                .as_ref()
                .map(|s| s.principal_id.as_str()),
            Some("new")
        );
        assert!(next.user_assigned.is_empty());
        assert_eq!(next.revoked.len(), 2);
        // None clears everything
        let next = run(&set(true, &["a"]), r#"{"type":"None"}"#).expect("ok");
        assert!(next.system_assigned.is_none() && next.user_assigned.is_empty());
    }

    #[test]
    fn inconsistent_requests_are_refused() {
        let cur = set(false, &["a"]);
        assert_eq!(
            run(
                &cur,
                &format!(
                    r#"{{"type":"UserAssigned","userAssignedIdentities":{{"{}":null}}}}"#,
                    id("a")
                )
            )
            .err(),
            Some(Refusal::LastIdentityRemoved)
        );
        assert_eq!(
            run(
                &cur,
                &format!(
                    r#"{{"type":"SystemAssigned","userAssignedIdentities":{{"{}":{{}}}}}}"#,
                    id("a")
                )
            )
            .err(),
            Some(Refusal::IdsWithoutUserType(IdentityType::SystemAssigned))
        );
        assert_eq!(
            run(
                &cur,
                &format!(
                    r#"{{"type":"UserAssigned","userAssignedIdentities":{{"{}":{{}},"{}":{{}}}}}}"#,
                    id("x"),
                    id("X")
                )
            )
            .err(),
            Some(Refusal::Duplicate(id("X")))
        );
        assert_eq!(
            run(
                &cur,
                &format!(
                    r#"{{"type":"UserAssigned","userAssignedIdentities":{{"{}":{{}},"{}":{{}}}}}}"#,
                    id("x"),
                    id("x")
                )
            )
            .err(),
            Some(Refusal::Duplicate(id("x")))
        );
        assert_eq!(
            run(&cur, r#"{"type":"Both"}"#).err(),
            Some(Refusal::BadType("Both".into()))
        );
        let change = plan(
            &cur,
            &request(&format!(
                r#"{{"type":"UserAssigned","userAssignedIdentities":{{"{}":{{}}}}}}"#,
                id("gone")
            )),
            Mode::Merge,
            150,
            |k| (!k.ends_with("gone")).then_some(1),
        );
        assert_eq!(change.err(), Some(Refusal::Missing(id("gone"))));
    }

    #[test]
    fn the_per_request_limit_counts_adds_and_removes() {
        let entries = |n: usize| {
            (0..n)
                .map(|i| format!(r#""{}":{{}}"#, id(&format!("i{i}"))))
                .collect::<Vec<_>>()
                .join(",")
        };
        let body = |n| {
            format!(
                r#"{{"type":"UserAssigned","userAssignedIdentities":{{{}}}}}"#,
                entries(n)
            )
        };
        let cur = set(false, &[]);
        assert!(plan(&cur, &request(&body(150)), Mode::Merge, 150, |_| Some(1)).is_ok());
        assert_eq!(
            plan(&cur, &request(&body(151)), Mode::Merge, 150, |_| Some(1)).err(),
            Some(Refusal::TooMany(151))
        );
    }

    #[test]
    fn identities_already_held_do_not_count_against_the_limit() {
        let held: Vec<String> = (0..3).map(|i| format!("h{i}")).collect();
        let held: Vec<&str> = held.iter().map(String::as_str).collect();
        let cur = set(false, &held);
        // Three repeats, one new, one removal of a held one, one removal of an absent one.
        let body = format!(
            r#"{{"type":"UserAssigned","userAssignedIdentities":{{"{}":{{}},"{}":{{}},"{}":{{}},"{}":{{}},"{}":null,"{}":null}}}}"#,
            id("h0"),
            id("H1"),
            id("h2"),
            id("new"),
            id("h2x"),
            id("absent")
        );
        let req = request(&body);
        assert_eq!(newly_assigned(&cur, &req, &|_| Some(1)), [id("new")]);
        assert!(plan(&cur, &req, Mode::Merge, 1, |_| Some(1)).is_ok());
        let with_removal = request(&format!(
            r#"{{"type":"UserAssigned","userAssignedIdentities":{{"{}":{{}},"{}":null}}}}"#,
            id("new"),
            id("h0")
        ));
        assert_eq!(
            plan(&cur, &with_removal, Mode::Merge, 1, |_| Some(1)).err(),
            Some(Refusal::TooMany(2))
        );
        // PUT: the listed held ones are kept, not added; the unlisted ones are removed.
        let put = request(&format!(
            r#"{{"type":"UserAssigned","userAssignedIdentities":{{"{}":{{}},"{}":{{}}}}}}"#,
            id("h0"),
            id("new")
        ));
        assert_eq!(
            plan(&cur, &put, Mode::Replace, 2, |_| Some(1)).err(),
            Some(Refusal::TooMany(3))
        );
        assert!(plan(&cur, &put, Mode::Replace, 3, |_| Some(1)).is_ok());
    }

    #[test]
    fn a_held_identity_deleted_and_recreated_since_counts_as_new() {
        let cur = set(false, &["a", "b"]);
        let req = request(&format!(
            r#"{{"type":"UserAssigned","userAssignedIdentities":{{"{}":{{}},"{}":{{}}}}}}"#,
            id("a"),
            id("b")
        ));
        // `a` was recreated (generation 2); the machine still holds generation 1.
        let live = |k: &str| Some(if k.ends_with("/a") { 2 } else { 1 });
        assert_eq!(newly_assigned(&cur, &req, &live), [id("a")]);
        // `b` was deleted: assigning it again is both new and missing.
        let gone = |k: &str| (!k.ends_with("/b")).then_some(1);
        assert_eq!(newly_assigned(&cur, &req, &gone), [id("b")]);
        assert_eq!(
            plan(&cur, &req, Mode::Merge, 150, gone).err(),
            Some(Refusal::Missing(id("b")))
        );
    }

    #[test]
    fn put_replaces_the_map() {
        let cur = set(false, &["a", "b"]);
        let change = plan(
            &cur,
            &request(&format!(
                r#"{{"type":"UserAssigned","userAssignedIdentities":{{"{}":{{}}}}}}"#,
                id("B")
            )),
            Mode::Replace,
            150,
            |_| Some(1),
        )
        .expect("ok");
        let mut next = cur.clone();
        let vis = Visibility {
            now: SystemTime::UNIX_EPOCH,
            propagation: Duration::ZERO,
            revocation: Duration::ZERO,
        };
        apply(&mut next, &change, |_| Some(1), vis, || sa("n"));
        assert_eq!(names(&next), ["b"], "the stored casing of a kept key stays");
    }

    #[test]
    fn a_stale_generation_is_reassigned_and_visibility_is_scheduled() {
        let cur = set(false, &["a"]);
        let change = plan(
            &cur,
            &request(&format!(
                r#"{{"type":"UserAssigned","userAssignedIdentities":{{"{}":{{}}}}}}"#,
                id("a")
            )),
            Mode::Merge,
            150,
            |_| Some(2),
        )
        .expect("ok");
        let mut next = cur.clone();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        let vis = Visibility {
            now,
            propagation: Duration::from_secs(5),
            revocation: Duration::ZERO,
        };
        apply(&mut next, &change, |_| Some(2), vis, || sa("n"));
        let a = next.user_assigned.values().next().expect("kept");
        assert_eq!(
            (a.generation, a.visible_from),
            (2, now + Duration::from_secs(5))
        );
    }

    proptest! {
        #[test]
        fn merge_never_holds_two_keys_equal_ignoring_case(
            start in proptest::collection::btree_set("[a-d]", 0..4),
            ops in proptest::collection::vec(("[a-dA-D]", any::<bool>(), any::<bool>()), 1..6),
        ) {
            let names: Vec<&str> = start.iter().map(String::as_str).collect();
            let mut cur = set(false, &names);
            for (name, assign, upper) in ops {
                let mut key = id(&name);
                if upper { key = key.to_uppercase(); }
                let body = format!(r#"{{"type":"UserAssigned","userAssignedIdentities":{{"{key}":{}}}}}"#, if assign { "{}" } else { "null" });
                if let Ok(next) = run(&cur, &body) {
                    // idempotence: the same request again changes nothing further
                    let again = run(&next, &body).expect("a repeat of an accepted request is accepted");
                    prop_assert_eq!(names_lower(&again), names_lower(&next));
                    cur = next;
                }
                let lowered: Vec<String> = cur.user_assigned.values().map(|a| a.id.as_str().to_lowercase()).collect();
                let mut dedup = lowered.clone();
                dedup.dedup();
                prop_assert_eq!(&dedup, &lowered);
                for (k, a) in &cur.user_assigned {
                    prop_assert_eq!(k, &normalize(a.id.as_str()));
                }
            }
        }
    }

    fn names_lower(s: &IdentitySet) -> Vec<String> {
        s.user_assigned.keys().cloned().collect()
    }
}
