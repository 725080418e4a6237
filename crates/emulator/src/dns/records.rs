//! A record set's PUT body, checked the way Azure DNS checks it: the records of the path's type
//! only, each well formed, at most [`MAX_RECORDS_PER_RECORD_SET`]. Property names are matched
//! ignoring case, as ARM's JSON reader does. Wording of the refusals is ours [E].

use std::net::{Ipv4Addr, Ipv6Addr};

use serde_json::{Map, Value, json};

use super::{MAX_RECORDS_PER_RECORD_SET, RecordSet, RecordType, new_etag};

/// Why a body is refused (400 `BadRequest`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RecordSetError(pub String);

fn refuse(message: impl Into<String>) -> RecordSetError {
    RecordSetError(message.into())
}

/// The value of `key` in `object`, ignoring the key's letter case.
fn field<'a>(object: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    object
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
        .filter(|v| !v.is_null())
}

/// Parses a PUT body for record set `name` of `record_type`. The TTL defaults to 3600 [E].
pub fn parse_record_set(
    name: &str,
    record_type: RecordType,
    body: &Value,
) -> Result<RecordSet, RecordSetError> {
    let empty = Map::new();
    let body = body
        .as_object()
        .ok_or_else(|| refuse("The request body must be a JSON object."))?;
    let properties = match field(body, "properties") {
        None => &empty,
        Some(Value::Object(p)) => p,
        Some(_) => return Err(refuse("'properties' must be an object.")),
    };
    for other in RecordType::ALL.into_iter().filter(|t| *t != record_type) {
        let given = field(properties, other.property());
        if given.is_some_and(|v| v.as_array().is_none_or(|a| !a.is_empty())) {
            return Err(refuse(format!(
                "A record set of type '{}' cannot contain '{}'.",
                record_type.as_str(),
                other.property()
            )));
        }
    }
    let ttl = match field(properties, "TTL") {
        None => 3600,
        Some(v) => v
            .as_i64()
            .filter(|t| (0..=i64::from(i32::MAX)).contains(t))
            .ok_or_else(|| refuse(format!("The TTL {v} is not valid.")))?,
    };
    let metadata = match field(properties, "metadata") {
        None => Map::new(),
        Some(Value::Object(m)) if m.values().all(Value::is_string) => m.clone(),
        Some(_) => return Err(refuse("'metadata' must map names to strings.")),
    };
    if record_type == RecordType::Cname && name == "@" {
        return Err(refuse(
            "A CNAME record set cannot be created at the zone apex ('@').",
        ));
    }
    let records = records(record_type, field(properties, record_type.property()))?;
    Ok(RecordSet {
        name: name.to_string(),
        record_type,
        ttl,
        metadata,
        records,
        etag: new_etag(),
    })
}

/// The type's records, normalised to the fields Azure keeps.
fn records(record_type: RecordType, given: Option<&Value>) -> Result<Value, RecordSetError> {
    let property = record_type.property();
    if record_type == RecordType::Cname {
        return match given {
            None => Ok(Value::Null),
            Some(Value::Object(o)) => Ok(json!({ "cname": text(o, "cname", property)? })),
            Some(_) => Err(refuse(format!("'{property}' must be an object."))),
        };
    }
    if record_type == RecordType::Soa {
        return Err(refuse(
            "The emulator keeps the SOA record set as the zone was created with it.",
        ));
    }
    let list = match given {
        None => return Ok(Value::Array(Vec::new())),
        Some(Value::Array(list)) => list,
        Some(_) => return Err(refuse(format!("'{property}' must be an array."))),
    };
    if list.len() > MAX_RECORDS_PER_RECORD_SET {
        return Err(refuse(format!(
            "A record set may hold at most {MAX_RECORDS_PER_RECORD_SET} records; {} were given.",
            list.len()
        )));
    }
    list.iter()
        .map(|record| {
            let record = record
                .as_object()
                .ok_or_else(|| refuse(format!("Each of '{property}' must be an object.")))?;
            record_of(record_type, record, property)
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Value::Array)
}

fn record_of(
    record_type: RecordType,
    record: &Map<String, Value>,
    property: &str,
) -> Result<Value, RecordSetError> {
    Ok(match record_type {
        RecordType::A => {
            let address = text(record, "ipv4Address", property)?;
            address
                .parse::<Ipv4Addr>()
                .map_err(|_| refuse(format!("'{address}' is not a valid IPv4 address.")))?;
            json!({ "ipv4Address": address })
        }
        RecordType::Aaaa => {
            let address = text(record, "ipv6Address", property)?;
            address
                .parse::<Ipv6Addr>()
                .map_err(|_| refuse(format!("'{address}' is not a valid IPv6 address.")))?;
            json!({ "ipv6Address": address })
        }
        RecordType::Mx => {
            let preference = field(record, "preference")
                .and_then(Value::as_u64)
                .filter(|p| *p <= u64::from(u16::MAX))
                .ok_or_else(|| refuse("An MX record needs a 'preference' from 0 to 65535."))?;
            json!({ "preference": preference, "exchange": text(record, "exchange", property)? })
        }
        RecordType::Ns => json!({ "nsdname": text(record, "nsdname", property)? }),
        RecordType::Txt => {
            let values = field(record, "value")
                .and_then(Value::as_array)
                .filter(|v| !v.is_empty() && v.iter().all(Value::is_string))
                .ok_or_else(|| refuse("A TXT record needs 'value', a list of strings."))?;
            json!({ "value": values })
        }
        RecordType::Cname | RecordType::Soa => unreachable!("handled by the caller"),
    })
}

fn text<'a>(
    record: &'a Map<String, Value>,
    key: &str,
    property: &str,
) -> Result<&'a str, RecordSetError> {
    field(record, key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| refuse(format!("Each of '{property}' needs '{key}'.")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_a_record_set_keeps_its_records_ttl_and_metadata() {
        let rs = parse_record_set(
            "www",
            RecordType::A,
            &json!({"properties": {"ttl": 300, "ARecords": [{"ipv4Address": "10.0.0.1"}],
                                   "metadata": {"owner": "x"}, "TXTRecords": []}}),
        )
        .expect("valid");
        assert_eq!(rs.ttl, 300);
        assert_eq!(rs.records, json!([{"ipv4Address": "10.0.0.1"}]));
        assert_eq!(rs.metadata["owner"], "x");
    }

    #[test]
    fn bodies_azure_refuses_are_refused() {
        let refused = |t, name: &str, body: Value| parse_record_set(name, t, &body).is_err();
        assert!(refused(
            RecordType::A,
            "x",
            json!({"properties": {"ARecords": [{"ipv4Address": "1.2.3"}]}})
        ));
        assert!(refused(
            RecordType::A,
            "x",
            json!({"properties": {"CNAMERecord": {"cname": "y"}}})
        ));
        assert!(refused(
            RecordType::Cname,
            "@",
            json!({"properties": {"CNAMERecord": {"cname": "y"}}})
        ));
        assert!(refused(
            RecordType::Txt,
            "x",
            json!({"properties": {"TXTRecords": [{"value": []}]}})
        ));
        assert!(refused(
            RecordType::Mx,
            "x",
            json!({"properties": {"MXRecords": [{"exchange": "m"}]}})
        ));
        assert!(refused(RecordType::Soa, "@", json!({"properties": {}})));
        let many: Vec<Value> = (0..21)
            .map(|i| json!({"ipv4Address": format!("10.0.0.{i}")}))
            .collect();
        assert!(refused(
            RecordType::A,
            "x",
            json!({"properties": {"ARecords": many}})
        ));
        assert!(!refused(
            RecordType::Aaaa,
            "x",
            json!({"properties": {"AAAARecords": [{"ipv6Address": "fd00::1"}]}})
        ));
        assert!(!refused(
            RecordType::A,
            "empty",
            json!({"properties": {"TTL": 60}})
        ));
    }
}
