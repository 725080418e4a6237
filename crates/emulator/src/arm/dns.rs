//! Azure DNS through ARM (`Microsoft.Network/dnsZones`, api-version 2018-05-01 as ExternalDNS
//! calls it): list and read zones; list, read, create or replace, and delete record sets. RBAC
//! is checked before existence, as everywhere in ARM; lists are paged by `nextLink`
//! (docs/emulator.md "Azure DNS").

use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use super::error::{self, ArmError};
use super::path::{RecordFilter, ZoneRef};
use super::{Call, Outcome};
use crate::armid::{self, ArmId};
use crate::dns::{self, DnsZone, RecordType, ZONE_TYPE, record_key};
use crate::world::World;

fn zone_id(zone: &ZoneRef) -> ArmId {
    armid::provider_resource_id(&zone.subscription, &zone.group, ZONE_TYPE, &zone.zone)
}

/// The record set's ID, which is also the scope its actions are checked on.
fn record_set_id(zone: &ZoneRef, record_type: RecordType, name: &str) -> ArmId {
    ArmId::new(&format!(
        "{}/{}/{name}",
        zone_id(zone),
        record_type.as_str()
    ))
}

/// `Microsoft.Network/dnszones/<TYPE>/<verb>`.
fn record_action(record_type: RecordType, verb: &str) -> String {
    format!("{ZONE_TYPE}/{}/{verb}", record_type.as_str())
}

/// The parent zone of a record-set request: 404 `ResourceGroupNotFound`, then
/// `ParentResourceNotFound`.
fn parent_zone<'w>(world: &'w World, zone: &ZoneRef) -> Result<&'w DnsZone, ArmError> {
    error::require_group(world, &zone.subscription, &zone.group)?;
    world
        .dns_zones
        .get(zone_id(zone).key())
        .ok_or_else(|| error::parent_resource_not_found(&zone.zone))
}

/// The query parameters of a list request, by name ignoring case.
fn query_param(call: &Call<'_>, name: &str) -> Option<String> {
    url::form_urlencoded::parse(call.query.unwrap_or_default().as_bytes())
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.into_owned())
}

/// One page of `items` (sorted by their key, which nothing else shows): `$top` of them (the
/// `dnsPageSize` knob when absent) after the `$skipToken`'s key, and a `nextLink` carrying the
/// request's other parameters when more follow. Keys, not positions, mark the place, so a
/// change between pages neither repeats nor skips what stayed.
fn page(call: &Call<'_>, items: Vec<(String, Value)>) -> Result<Value, ArmError> {
    let top = match query_param(call, "$top") {
        None => call.shared.knobs_with(|k| k.arm.dns_page_size.get()),
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| {
                error::bad_request(format!("The value '{text}' of $top is not valid."))
            })?,
    };
    let after = match query_param(call, "$skipToken") {
        None => None,
        Some(token) => Some(
            URL_SAFE_NO_PAD
                .decode(&token)
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .ok_or_else(|| error::bad_request("The $skipToken is not valid."))?,
        ),
    };
    let mut rest = items
        .into_iter()
        .filter(|(key, _)| after.as_ref().is_none_or(|after| key > after))
        .peekable();
    let mut value = Vec::new();
    let mut last = None;
    while value.len() < top {
        let Some((key, item)) = rest.next() else {
            break;
        };
        value.push(item);
        last = Some(key);
    }
    let mut body = json!({ "value": value });
    if let (Some(last), Some(_)) = (last, rest.peek()) {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in url::form_urlencoded::parse(call.query.unwrap_or_default().as_bytes()) {
            if !k.eq_ignore_ascii_case("$skipToken") {
                query.append_pair(&k, &v);
            }
        }
        query.append_pair("$skipToken", &URL_SAFE_NO_PAD.encode(last));
        body["nextLink"] = json!(format!(
            "{}{}?{}",
            call.base_url(),
            call.path,
            query.finish()
        ));
    }
    Ok(body)
}

pub fn list_zones(call: &mut Call<'_>, subscription: &str, group: &str) -> Outcome {
    let scope = armid::resource_group_id(subscription, group);
    let items: Vec<(String, Value)> = {
        let world = call.shared.world();
        call.require(&world, &format!("{ZONE_TYPE}/read"), &scope)?;
        error::require_group(&world, subscription, group)?;
        world
            .dns_zones
            .iter()
            .filter(|(_, zone)| zone.id.is_within(&scope))
            .map(|(key, zone)| (key.clone(), zone.render()))
            .collect()
    };
    Ok((StatusCode::OK, Some(page(call, items)?)))
}

pub fn get_zone(call: &mut Call<'_>, zone: &ZoneRef) -> Outcome {
    let world = call.shared.world();
    call.require(&world, &format!("{ZONE_TYPE}/read"), &zone_id(zone))?;
    error::require_group(&world, &zone.subscription, &zone.group)?;
    let found = world
        .dns_zones
        .get(zone_id(zone).key())
        .ok_or_else(|| error::resource_not_found(ZONE_TYPE, &zone.zone, &zone.group))?;
    Ok((StatusCode::OK, Some(found.render())))
}

pub fn list_record_sets(call: &mut Call<'_>, zone: &ZoneRef, filter: RecordFilter) -> Outcome {
    let action = match filter {
        RecordFilter::All => format!("{ZONE_TYPE}/all/read"),
        RecordFilter::RecordSets => format!("{ZONE_TYPE}/recordsets/read"),
        RecordFilter::Type(t) => record_action(t, "read"),
    };
    let suffix = query_param(call, "$recordsetnamesuffix")
        .filter(|s| !s.is_empty())
        .map(|s| s.to_ascii_lowercase());
    let items: Vec<(String, Value)> = {
        let world = call.shared.world();
        call.require(&world, &action, &zone_id(zone))?;
        let found = parent_zone(&world, zone)?;
        found
            .record_sets
            .iter()
            .filter(|((_, t), _)| filter.admits(*t))
            .filter(|((name, _), _)| {
                suffix
                    .as_ref()
                    .is_none_or(|s| name == s || name.ends_with(&format!(".{s}")))
            })
            // Types sort as their names do, so this key sorts as the map does.
            .map(|((name, t), rs)| {
                (
                    format!("{name}\0{}", t.as_str()),
                    found.render_record_set(rs),
                )
            })
            .collect()
    };
    Ok((StatusCode::OK, Some(page(call, items)?)))
}

pub fn get_record_set(
    call: &mut Call<'_>,
    zone: &ZoneRef,
    record_type: RecordType,
    name: &str,
) -> Outcome {
    let world = call.shared.world();
    let id = record_set_id(zone, record_type, name);
    call.require(&world, &record_action(record_type, "read"), &id)?;
    let found = parent_zone(&world, zone)?;
    let rs = found
        .record_sets
        .get(&record_key(name, record_type))
        .ok_or_else(|| error::record_set_not_found(name, &zone.group, &zone.subscription))?;
    Ok((StatusCode::OK, Some(found.render_record_set(rs))))
}

/// Creates (201) or replaces (200) a record set; a replaced one keeps its name's casing.
pub fn put_record_set(
    call: &mut Call<'_>,
    zone: &ZoneRef,
    record_type: RecordType,
    name: &str,
) -> Outcome {
    let body: Value = call.json()?;
    let shared = call.shared;
    let mut world = shared.world_mut();
    let id = record_set_id(zone, record_type, name);
    call.require(&world, &record_action(record_type, "write"), &id)?;
    parent_zone(&world, zone)?;
    let mut record_set = dns::parse_record_set(name, record_type, &body)
        .map_err(|e| error::bad_request(e.to_string()))?;
    let found = world
        .dns_zones
        .get_mut(zone_id(zone).key())
        .ok_or_else(|| error::parent_resource_not_found(&zone.zone))?;
    let key = record_key(name, record_type);
    let status = match found.record_sets.get(&key) {
        Some(existing) => {
            record_set.name.clone_from(&existing.name);
            StatusCode::OK
        }
        None => StatusCode::CREATED,
    };
    let rendered = found.render_record_set(&record_set);
    found.record_sets.insert(key, record_set);
    Ok((status, Some(rendered)))
}

/// Deletes a record set: 200, or 204 when there was none. The apex SOA and NS record sets belong
/// to the zone and are refused [E].
pub fn delete_record_set(
    call: &mut Call<'_>,
    zone: &ZoneRef,
    record_type: RecordType,
    name: &str,
) -> Outcome {
    let shared = call.shared;
    let mut world = shared.world_mut();
    let id = record_set_id(zone, record_type, name);
    call.require(&world, &record_action(record_type, "delete"), &id)?;
    parent_zone(&world, zone)?;
    if name == "@" && matches!(record_type, RecordType::Soa | RecordType::Ns) {
        return Err(error::bad_request(format!(
            "The {} record set at the zone apex cannot be deleted.",
            record_type.as_str()
        )));
    }
    let found = world
        .dns_zones
        .get_mut(zone_id(zone).key())
        .ok_or_else(|| error::parent_resource_not_found(&zone.zone))?;
    match found.record_sets.remove(&record_key(name, record_type)) {
        Some(_) => Ok((StatusCode::OK, None)),
        None => Ok((StatusCode::NO_CONTENT, None)),
    }
}
