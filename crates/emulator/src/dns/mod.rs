//! Azure DNS public zones and their record sets (`Microsoft.Network/dnsZones`, api-version
//! 2018-05-01 as ExternalDNS's Azure provider uses it; docs/emulator.md "Azure DNS"): the data
//! the world holds and the JSON Azure shows. A leaf module: ARM's handlers (`arm/dns.rs`) and the
//! admin snapshot read it; it uses nothing of theirs.

mod records;

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::armid::{self, ArmId};

pub use records::{RecordSetError, parse_record_set};

/// The resource type as Azure DNS spells it in IDs and `type` (lower-case `dnszones`). Clients
/// depend on it: ExternalDNS strips exactly `Microsoft.Network/dnszones/` from a record set's
/// `type` to get the record type.
pub const ZONE_TYPE: &str = "Microsoft.Network/dnszones";

/// Azure DNS's limits for a public zone (shown on the zone; the first one is enforced).
pub const MAX_RECORDS_PER_RECORD_SET: usize = 20;
const MAX_RECORD_SETS: usize = 10_000;

/// The record types the emulator keeps. SRV, PTR and CAA are not modelled (their paths are not
/// routed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RecordType {
    A,
    Aaaa,
    Cname,
    Mx,
    Ns,
    Soa,
    Txt,
}

impl RecordType {
    pub const ALL: [RecordType; 7] = [
        RecordType::A,
        RecordType::Aaaa,
        RecordType::Cname,
        RecordType::Mx,
        RecordType::Ns,
        RecordType::Soa,
        RecordType::Txt,
    ];

    /// A path segment (`A`, `aaaa`, …; any letter case) as a record type.
    pub fn parse(segment: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(segment))
    }

    /// The type as Azure writes it in paths, IDs and actions: `A`, `AAAA`, `CNAME`, …
    pub fn as_str(self) -> &'static str {
        match self {
            RecordType::A => "A",
            RecordType::Aaaa => "AAAA",
            RecordType::Cname => "CNAME",
            RecordType::Mx => "MX",
            RecordType::Ns => "NS",
            RecordType::Soa => "SOA",
            RecordType::Txt => "TXT",
        }
    }

    /// The `properties` key holding this type's records.
    pub fn property(self) -> &'static str {
        match self {
            RecordType::A => "ARecords",
            RecordType::Aaaa => "AAAARecords",
            RecordType::Cname => "CNAMERecord",
            RecordType::Mx => "MXRecords",
            RecordType::Ns => "NSRecords",
            RecordType::Soa => "SOARecord",
            RecordType::Txt => "TXTRecords",
        }
    }
}

/// One record set: a relative name (`@` for the apex) and a type, with its records.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordSet {
    /// As the creating request wrote it; names compare ignoring case.
    pub name: String,
    pub record_type: RecordType,
    pub ttl: i64,
    pub metadata: Map<String, Value>,
    /// The value of the type's property (`ARecords`: an array, `CNAMERecord`: an object), as
    /// validated by [`parse_record_set`].
    pub records: Value,
    /// Changes on every write.
    pub etag: String,
}

/// A record set's key in its zone: the lower-case relative name and the type.
pub type RecordKey = (String, RecordType);

pub fn record_key(name: &str, record_type: RecordType) -> RecordKey {
    (name.to_ascii_lowercase(), record_type)
}

#[derive(Debug, Clone)]
pub struct DnsZone {
    pub id: ArmId,
    pub subscription: String,
    pub resource_group: String,
    pub name: String,
    pub etag: String,
    pub name_servers: Vec<String>,
    /// Sorted by name, then type: the apex (`@`) first.
    pub record_sets: BTreeMap<RecordKey, RecordSet>,
}

/// A GUID-shaped etag from `seed`, so a world's zones look the same on every start.
fn etag_of(seed: &str) -> String {
    let digest = Sha256::digest(seed.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Uuid::from_bytes(bytes).to_string()
}

/// A fresh etag for a record set just written.
pub fn new_etag() -> String {
    uuid::Uuid::new_v4().to_string()
}

impl DnsZone {
    /// A zone as Azure creates it: the SOA and NS record sets at the apex, naming the four
    /// Azure DNS name servers of one of its name-server sets.
    pub fn new(subscription: &str, resource_group: &str, name: &str) -> Self {
        let id = armid::provider_resource_id(subscription, resource_group, ZONE_TYPE, name);
        let set = 1 + Sha256::digest(id.key().as_bytes())[0] % 9;
        let name_servers: Vec<String> = ["com", "net", "org", "info"]
            .iter()
            .enumerate()
            .map(|(i, tld)| format!("ns{}-{set:02}.azure-dns.{tld}.", i + 1))
            .collect();
        let apex = |record_type, ttl, records| RecordSet {
            name: "@".into(),
            record_type,
            ttl,
            metadata: Map::new(),
            records,
            etag: etag_of(&format!("{}/{record_type:?}", id.key())),
        };
        let soa = apex(
            RecordType::Soa,
            3600,
            json!({
                "host": name_servers[0], "email": "azuredns-hostmaster.microsoft.com",
                "serialNumber": 1, "refreshTime": 3600, "retryTime": 300,
                "expireTime": 2_419_200, "minimumTTL": 300,
            }),
        );
        let ns = apex(
            RecordType::Ns,
            172_800,
            Value::Array(
                name_servers
                    .iter()
                    .map(|n| json!({ "nsdname": n }))
                    .collect(),
            ),
        );
        let record_sets = [soa, ns]
            .into_iter()
            .map(|rs| (record_key(&rs.name, rs.record_type), rs))
            .collect();
        Self {
            etag: etag_of(id.key()),
            id,
            subscription: subscription.to_string(),
            resource_group: resource_group.to_string(),
            name: name.to_string(),
            name_servers,
            record_sets,
        }
    }

    /// The ID of a record set of this zone (also its RBAC scope).
    pub fn record_set_id(&self, record_type: RecordType, name: &str) -> ArmId {
        ArmId::new(&format!("{}/{}/{name}", self.id, record_type.as_str()))
    }

    pub fn render(&self) -> Value {
        json!({
            "id": self.id.as_str(),
            "name": self.name,
            "type": ZONE_TYPE,
            "etag": self.etag,
            "location": "global",
            "tags": {},
            "properties": {
                "maxNumberOfRecordSets": MAX_RECORD_SETS,
                "maxNumberOfRecordsPerRecordSet": null,
                "nameServers": self.name_servers,
                "numberOfRecordSets": self.record_sets.len(),
                "zoneType": "Public",
            },
        })
    }

    pub fn render_record_set(&self, rs: &RecordSet) -> Value {
        let fqdn = if rs.name == "@" {
            format!("{}.", self.name)
        } else {
            format!("{}.{}.", rs.name, self.name)
        };
        let mut properties = json!({
            "TTL": rs.ttl,
            "fqdn": fqdn,
            "provisioningState": "Succeeded",
            "targetResource": {},
        });
        if !rs.metadata.is_empty() {
            properties["metadata"] = Value::Object(rs.metadata.clone());
        }
        properties[rs.record_type.property()] = rs.records.clone();
        json!({
            "id": self.record_set_id(rs.record_type, &rs.name).as_str(),
            "name": rs.name,
            "type": format!("{ZONE_TYPE}/{}", rs.record_type.as_str()),
            "etag": rs.etag,
            "properties": properties,
        })
    }

    /// The zone with every record set, for the admin snapshot.
    pub fn snapshot(&self) -> Value {
        let mut zone = self.render();
        zone["recordSets"] = self
            .record_sets
            .values()
            .map(|rs| self.render_record_set(rs))
            .collect();
        zone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_zone_has_its_apex_soa_and_ns_and_azures_shape() {
        let zone = DnsZone::new("S", "RG", "example.com");
        assert_eq!(
            zone.id.as_str(),
            "/subscriptions/S/resourceGroups/RG/providers/Microsoft.Network/dnszones/example.com"
        );
        let shown = zone.render();
        assert_eq!(shown["type"], "Microsoft.Network/dnszones");
        assert_eq!(shown["properties"]["numberOfRecordSets"], 2);
        assert_eq!(
            shown["properties"]["nameServers"].as_array().map(Vec::len),
            Some(4)
        );
        let apex: Vec<Value> = zone
            .record_sets
            .values()
            .map(|rs| zone.render_record_set(rs))
            .collect();
        assert_eq!(apex[0]["type"], "Microsoft.Network/dnszones/NS");
        assert_eq!(apex[0]["properties"]["fqdn"], "example.com.");
        assert_eq!(
            apex[1]["properties"]["SOARecord"]["host"],
            shown["properties"]["nameServers"][0]
        );
        assert_eq!(DnsZone::new("S", "RG", "example.com").etag, zone.etag);
    }

    #[test]
    fn record_types_parse_in_any_case() {
        assert_eq!(RecordType::parse("aaaa"), Some(RecordType::Aaaa));
        assert_eq!(RecordType::parse("Cname"), Some(RecordType::Cname));
        assert_eq!(RecordType::parse("SRV"), None);
        assert_eq!(RecordType::parse("all"), None);
    }
}
