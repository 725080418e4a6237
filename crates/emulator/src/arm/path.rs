//! ARM request paths → routes. axum's router is case-sensitive and ARM is not
//! (`resourceGroups` ≡ `resourcegroups`, `Microsoft.Compute` ≡ `microsoft.compute`), so the ARM
//! listener has one fallback handler and this pure parser decides what a path names. Names are
//! passed through as written; lookups compare them case-insensitively.

use crate::dns::RecordType;

/// A VM or a scale set: the two compute kinds whose identities ARM manages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComputeKind {
    VirtualMachine,
    ScaleSet,
}

impl ComputeKind {
    /// The resource type, e.g. `Microsoft.Compute/virtualMachines`.
    pub fn resource_type(self) -> &'static str {
        match self {
            ComputeKind::VirtualMachine => crate::armid::VIRTUAL_MACHINE_TYPE,
            ComputeKind::ScaleSet => crate::armid::SCALE_SET_TYPE,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/subscriptions`: the subscriptions the caller can see (a tenant-level request).
    SubscriptionList,
    /// `…/providers/Microsoft.Compute/{virtualMachines|virtualMachineScaleSets}/{name}`
    Compute {
        subscription: String,
        group: String,
        kind: ComputeKind,
        name: String,
    },
    /// `…/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines`
    VirtualMachineList { subscription: String, group: String },
    /// `…/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachineScaleSets`
    ScaleSetList { subscription: String, group: String },
    /// `…/virtualMachineScaleSets/{name}/virtualMachines`
    ScaleSetInstances {
        subscription: String,
        group: String,
        name: String,
    },
    /// `/subscriptions/{sub}/providers/Microsoft.Compute/locations/{loc}/operations/{id}`
    Operation {
        subscription: String,
        location: String,
        id: String,
    },
    /// `…/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}`
    Identity {
        subscription: String,
        group: String,
        name: String,
    },
    /// `…/providers/Microsoft.ManagedIdentity/userAssignedIdentities`
    IdentityList { subscription: String, group: String },
    /// `{scope}/providers/Microsoft.Authorization/roleAssignments/{name}`
    RoleAssignment {
        subscription: String,
        scope: String,
        name: String,
    },
    /// `{scope}/providers/Microsoft.Authorization/roleAssignments`
    RoleAssignmentList { subscription: String, scope: String },
    /// `…/resourceGroups/{rg}/providers/Microsoft.Network/dnsZones`
    DnsZoneList { subscription: String, group: String },
    /// `…/providers/Microsoft.Network/dnsZones/{zone}`
    DnsZone(ZoneRef),
    /// `…/dnsZones/{zone}/all`, `…/recordsets` or `…/{type}`
    RecordSetList { zone: ZoneRef, filter: RecordFilter },
    /// `…/dnsZones/{zone}/{type}/{name}`
    RecordSet {
        zone: ZoneRef,
        record_type: RecordType,
        name: String,
    },
}

/// A DNS zone named by a path; the zone and record-set names are percent-decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneRef {
    pub subscription: String,
    pub group: String,
    pub zone: String,
}

/// Which record sets a list names: every type (`all`, `recordsets`) or one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordFilter {
    All,
    RecordSets,
    Type(RecordType),
}

impl RecordFilter {
    pub fn admits(self, record_type: RecordType) -> bool {
        match self {
            RecordFilter::Type(only) => only == record_type,
            RecordFilter::All | RecordFilter::RecordSets => true,
        }
    }
}

impl Route {
    /// The subscription a request is under; `None` for tenant-level requests.
    pub fn subscription(&self) -> Option<&str> {
        Some(match self {
            Route::SubscriptionList => return None,
            Route::Compute { subscription, .. }
            | Route::VirtualMachineList { subscription, .. }
            | Route::ScaleSetList { subscription, .. }
            | Route::ScaleSetInstances { subscription, .. }
            | Route::Operation { subscription, .. }
            | Route::Identity { subscription, .. }
            | Route::IdentityList { subscription, .. }
            | Route::RoleAssignment { subscription, .. }
            | Route::RoleAssignmentList { subscription, .. }
            | Route::DnsZoneList { subscription, .. } => subscription,
            Route::DnsZone(zone)
            | Route::RecordSetList { zone, .. }
            | Route::RecordSet { zone, .. } => &zone.subscription,
        })
    }
}

fn is(segment: &str, literal: &str) -> bool {
    segment.eq_ignore_ascii_case(literal)
}

/// What an ARM path names, or `None` when the emulator serves nothing there.
pub fn parse(path: &str) -> Option<Route> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if let [only] = segments.as_slice() {
        return is(only, "subscriptions").then_some(Route::SubscriptionList);
    }
    if segments.len() < 2 || !is(segments[0], "subscriptions") {
        return None;
    }
    let subscription = segments[1].to_string();
    if let Some(route) = role_assignment(&segments, &subscription) {
        return Some(route);
    }
    match segments.as_slice() {
        [_, _, p, ns, locations, location, operations, id]
            if is(p, "providers")
                && is(ns, "Microsoft.Compute")
                && is(locations, "locations")
                && is(operations, "operations") =>
        {
            Some(Route::Operation {
                subscription,
                location: location.to_string(),
                id: id.to_string(),
            })
        }
        [_, _, rg, group, p, ns, rest @ ..] if is(rg, "resourceGroups") && is(p, "providers") => {
            let group = group.to_string();
            if is(ns, "Microsoft.Compute") {
                compute(subscription, group, rest)
            } else if is(ns, "Microsoft.ManagedIdentity") {
                managed_identity(subscription, group, rest)
            } else if is(ns, "Microsoft.Network") {
                network(subscription, group, rest)
            } else {
                None
            }
        }
        _ => None,
    }
}

fn compute(subscription: String, group: String, rest: &[&str]) -> Option<Route> {
    match rest {
        [t] if is(t, "virtualMachines") => Some(Route::VirtualMachineList {
            subscription,
            group,
        }),
        [t] if is(t, "virtualMachineScaleSets") => Some(Route::ScaleSetList {
            subscription,
            group,
        }),
        [t, name] => {
            let kind = if is(t, "virtualMachines") {
                ComputeKind::VirtualMachine
            } else if is(t, "virtualMachineScaleSets") {
                ComputeKind::ScaleSet
            } else {
                return None;
            };
            Some(Route::Compute {
                subscription,
                group,
                kind,
                name: name.to_string(),
            })
        }
        [t, name, vms] if is(t, "virtualMachineScaleSets") && is(vms, "virtualMachines") => {
            Some(Route::ScaleSetInstances {
                subscription,
                group,
                name: name.to_string(),
            })
        }
        _ => None,
    }
}

fn managed_identity(subscription: String, group: String, rest: &[&str]) -> Option<Route> {
    match rest {
        [t] if is(t, "userAssignedIdentities") => Some(Route::IdentityList {
            subscription,
            group,
        }),
        [t, name] if is(t, "userAssignedIdentities") => Some(Route::Identity {
            subscription,
            group,
            name: name.to_string(),
        }),
        _ => None,
    }
}

fn network(subscription: String, group: String, rest: &[&str]) -> Option<Route> {
    let zone = |name: &str| ZoneRef {
        subscription: subscription.clone(),
        group: group.clone(),
        zone: percent_decoded(name),
    };
    match rest {
        [t] if is(t, "dnsZones") => Some(Route::DnsZoneList {
            subscription: subscription.clone(),
            group: group.clone(),
        }),
        [t, name] if is(t, "dnsZones") => Some(Route::DnsZone(zone(name))),
        [t, name, list] if is(t, "dnsZones") => {
            let filter = if is(list, "all") {
                RecordFilter::All
            } else if is(list, "recordsets") {
                RecordFilter::RecordSets
            } else {
                RecordFilter::Type(RecordType::parse(list)?)
            };
            Some(Route::RecordSetList {
                zone: zone(name),
                filter,
            })
        }
        [t, name, record_type, record] if is(t, "dnsZones") => Some(Route::RecordSet {
            zone: zone(name),
            record_type: RecordType::parse(record_type)?,
            name: percent_decoded(record),
        }),
        _ => None,
    }
}

/// `%XX` escapes decoded (clients escape `@` and other characters of record-set names
/// differently); malformed escapes stay as they are.
fn percent_decoded(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(high), Some(low)) => {
                out.push(u8::try_from(high * 16 + low).unwrap_or(b'?'));
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| segment.to_string())
}

/// Role assignments hang below any scope, so look for the provider segments from the end.
fn role_assignment(segments: &[&str], subscription: &str) -> Option<Route> {
    let at = (0..segments.len().saturating_sub(2)).rev().find(|&i| {
        is(segments[i], "providers")
            && is(segments[i + 1], "Microsoft.Authorization")
            && is(segments[i + 2], "roleAssignments")
    })?;
    let scope = format!("/{}", segments[..at].join("/"));
    let subscription = subscription.to_string();
    match &segments[at + 3..] {
        [] => Some(Route::RoleAssignmentList {
            subscription,
            scope,
        }),
        [name] => Some(Route::RoleAssignment {
            subscription,
            scope,
            name: name.to_string(),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const VMSS: &str = "/subscriptions/S1/resourceGroups/Node-RG/providers/Microsoft.Compute/virtualMachineScaleSets/pool";

    #[test]
    fn compute_paths_route_with_names_as_written() {
        assert_eq!(
            parse(VMSS),
            Some(Route::Compute {
                subscription: "S1".into(),
                group: "Node-RG".into(),
                kind: ComputeKind::ScaleSet,
                name: "pool".into()
            })
        );
        assert!(matches!(
            parse(&format!("{VMSS}/virtualMachines")),
            Some(Route::ScaleSetInstances { .. })
        ));
        assert!(matches!(
            parse(
                "/subscriptions/s/resourcegroups/rg/providers/microsoft.compute/virtualmachines/"
            ),
            Some(Route::VirtualMachineList { .. })
        ));
        assert_eq!(
            parse(
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/VirtualMachineScaleSets"
            ),
            Some(Route::ScaleSetList {
                subscription: "s".into(),
                group: "rg".into()
            })
        );
        assert!(parse(&format!("{VMSS}/virtualMachines/0/extra")).is_none());
        assert!(
            parse("/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/x/y").is_none()
        );
        assert!(parse("/tenants/t").is_none());
        assert_eq!(parse("/Subscriptions/"), Some(Route::SubscriptionList));
        assert_eq!(parse("/subscriptions"), Some(Route::SubscriptionList));
        assert!(parse("/").is_none());
        assert!(parse("/tenants").is_none());
    }

    #[test]
    fn operations_identities_and_role_assignments_route() {
        assert_eq!(
            parse("/subscriptions/s/providers/Microsoft.Compute/locations/eastus/operations/op1"),
            Some(Route::Operation {
                subscription: "s".into(),
                location: "eastus".into(),
                id: "op1".into()
            })
        );
        assert!(matches!(
            parse(
                "/subscriptions/s/resourcegroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities"
            ),
            Some(Route::IdentityList { .. })
        ));
        assert_eq!(
            parse(&format!(
                "{VMSS}/providers/Microsoft.Authorization/roleAssignments/g1"
            )),
            Some(Route::RoleAssignment {
                subscription: "S1".into(),
                scope: VMSS.into(),
                name: "g1".into()
            })
        );
        assert_eq!(
            parse("/subscriptions/s/providers/microsoft.authorization/roleassignments"),
            Some(Route::RoleAssignmentList {
                subscription: "s".into(),
                scope: "/subscriptions/s".into()
            })
        );
    }

    #[test]
    fn dns_zones_and_record_sets_route() {
        let zones = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/dnsZones";
        assert_eq!(
            parse(zones),
            Some(Route::DnsZoneList {
                subscription: "s".into(),
                group: "rg".into()
            })
        );
        let zone = ZoneRef {
            subscription: "s".into(),
            group: "rg".into(),
            zone: "example.com".into(),
        };
        assert_eq!(
            parse(&format!("{zones}/example.com")),
            Some(Route::DnsZone(zone.clone()))
        );
        assert_eq!(
            parse(&format!("{zones}/example.com/ALL")),
            Some(Route::RecordSetList {
                zone: zone.clone(),
                filter: RecordFilter::All
            })
        );
        assert_eq!(
            parse(&format!("{zones}/example.com/txt")),
            Some(Route::RecordSetList {
                zone: zone.clone(),
                filter: RecordFilter::Type(RecordType::Txt)
            })
        );
        assert_eq!(
            parse(&format!("{zones}/example.com/A/%40")),
            Some(Route::RecordSet {
                zone,
                record_type: RecordType::A,
                name: "@".into()
            })
        );
        assert!(parse(&format!("{zones}/example.com/SRV/x")).is_none());
        assert!(parse(&format!("{zones}/example.com/A/x/y")).is_none());
        assert_eq!(percent_decoded("a%2Gb%41"), "a%2GbA");
    }

    fn flip_case(text: &str, mask: &[bool]) -> String {
        text.chars()
            .zip(mask.iter().cycle())
            .map(|(c, up)| {
                if *up {
                    c.to_ascii_uppercase()
                } else {
                    c.to_ascii_lowercase()
                }
            })
            .collect()
    }

    fn lowered(route: Option<Route>) -> String {
        format!("{route:?}").to_ascii_lowercase()
    }

    proptest! {
        #[test]
        fn routing_ignores_case(mask in proptest::collection::vec(any::<bool>(), 1..64), which in 0usize..8) {
            let paths = [
                VMSS.to_string(),
                format!("{VMSS}/virtualMachines"),
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm-1".to_string(),
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/DEMO".to_string(),
                "/subscriptions/s/providers/Microsoft.Compute/locations/eastus/operations/abc".to_string(),
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Authorization/roleAssignments/abc".to_string(),
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/dnsZones/zone.example/all".to_string(),
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/dnsZones/zone.example/CNAME/www".to_string(),
            ];
            let path = &paths[which];
            let expected = parse(path);
            prop_assert!(expected.is_some());
            prop_assert_eq!(lowered(parse(&flip_case(path, &mask))), lowered(expected));
        }
    }
}
