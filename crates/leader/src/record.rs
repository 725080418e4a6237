//! The leader record both locks carry: a Lease's spec, and the JSON client-go keeps in the
//! `control-plane.alpha.kubernetes.io/leader` annotation of upstream MIC's Endpoints lock.

use k8s_openapi::api::coordination::v1::LeaseSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// The annotation client-go's Endpoints (and ConfigMap) locks keep their record in.
pub const LEADER_ANNOTATION: &str = "control-plane.alpha.kubernetes.io/leader";

/// Who holds a lock, for how long, and since when (client-go's `LeaderElectionRecord`).
///
/// An empty `holder_identity` means nobody: a released lock.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LeaderRecord {
    pub holder_identity: String,
    pub lease_duration_seconds: i32,
    pub acquire_time: Option<Timestamp>,
    pub renew_time: Option<Timestamp>,
    pub leader_transitions: i32,
}

/// The annotation's JSON as client-go writes it: every key present, times as RFC 3339 with
/// second precision (`metav1.Time`), `null` for an unset time.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AnnotationJson {
    #[serde(default)]
    holder_identity: String,
    #[serde(default)]
    lease_duration_seconds: i32,
    #[serde(default)]
    acquire_time: Option<String>,
    #[serde(default)]
    renew_time: Option<String>,
    #[serde(default)]
    leader_transitions: i32,
}

impl LeaderRecord {
    /// Reads a Lease's spec; absent fields read as client-go reads them (empty, zero).
    pub fn from_lease(spec: &LeaseSpec) -> Self {
        Self {
            holder_identity: spec.holder_identity.clone().unwrap_or_default(),
            lease_duration_seconds: spec.lease_duration_seconds.unwrap_or(0),
            acquire_time: spec.acquire_time.as_ref().map(|t| t.0),
            renew_time: spec.renew_time.as_ref().map(|t| t.0),
            leader_transitions: spec.lease_transitions.unwrap_or(0),
        }
    }

    /// The Lease spec for this record. Other spec fields (`preferredHolder`, `strategy`) are
    /// left unset: coordinated leader election is not used.
    pub fn to_lease(&self) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.holder_identity.clone()),
            lease_duration_seconds: Some(self.lease_duration_seconds),
            acquire_time: self.acquire_time.map(MicroTime),
            renew_time: self.renew_time.map(MicroTime),
            lease_transitions: Some(self.leader_transitions),
            ..LeaseSpec::default()
        }
    }

    /// Parses the annotation's JSON. Unknown keys are ignored and a time that does not parse
    /// reads as unset: only the holder and the duration decide anything.
    pub fn from_annotation(json: &str) -> Result<Self, serde_json::Error> {
        let raw: AnnotationJson = serde_json::from_str(json)?;
        let time = |t: Option<String>| t.and_then(|t| t.parse::<Timestamp>().ok());
        Ok(Self {
            holder_identity: raw.holder_identity,
            lease_duration_seconds: raw.lease_duration_seconds,
            acquire_time: time(raw.acquire_time),
            renew_time: time(raw.renew_time),
            leader_transitions: raw.leader_transitions,
        })
    }

    /// The annotation's JSON, in client-go's shape.
    pub fn to_annotation(&self) -> String {
        // metav1.Time keeps whole seconds; a fraction would make Go's RFC 3339 layout differ.
        let time = |t: Option<Timestamp>| {
            t.and_then(|t| Timestamp::from_second(t.as_second()).ok())
                .map(|t| t.to_string())
        };
        let raw = AnnotationJson {
            holder_identity: self.holder_identity.clone(),
            lease_duration_seconds: self.lease_duration_seconds,
            acquire_time: time(self.acquire_time),
            renew_time: time(self.renew_time),
            leader_transitions: self.leader_transitions,
        };
        // A struct of strings and integers always serializes.
        serde_json::to_string(&raw).unwrap_or_default()
    }

    /// The record a graceful shutdown leaves: nobody holds it and it expires in a second, so a
    /// standby (podid's or upstream's) takes over at its next try (client-go's ReleaseOnCancel).
    pub fn released(&self, now: Timestamp) -> Self {
        Self {
            holder_identity: String::new(),
            lease_duration_seconds: 1,
            acquire_time: Some(now),
            renew_time: Some(now),
            leader_transitions: self.leader_transitions,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn reads_the_annotation_client_go_writes() {
        let json = r#"{"holderIdentity":"mic-7d9f-abcde","leaseDurationSeconds":15,"acquireTime":"2024-05-01T10:00:00Z","renewTime":"2024-05-01T10:05:30Z","leaderTransitions":3}"#;
        let record = LeaderRecord::from_annotation(json).unwrap();
        assert_eq!(
            record,
            LeaderRecord {
                holder_identity: "mic-7d9f-abcde".into(),
                lease_duration_seconds: 15,
                acquire_time: Some(ts("2024-05-01T10:00:00Z")),
                renew_time: Some(ts("2024-05-01T10:05:30Z")),
                leader_transitions: 3,
            }
        );
        assert_eq!(record.to_annotation(), json);
    }

    #[test]
    fn null_times_missing_keys_and_unknown_keys_are_tolerated() {
        let record = LeaderRecord::from_annotation(
            r#"{"holderIdentity":"","acquireTime":null,"renewTime":"not a time","extra":1}"#,
        )
        .unwrap();
        assert_eq!(record, LeaderRecord::default());
        assert!(LeaderRecord::from_annotation("not json").is_err());
    }

    #[test]
    fn annotation_times_have_whole_seconds() {
        let record = LeaderRecord {
            holder_identity: "podid".into(),
            renew_time: Some(ts("2024-05-01T10:05:30.987654Z")),
            ..LeaderRecord::default()
        };
        assert!(
            record
                .to_annotation()
                .contains(r#""renewTime":"2024-05-01T10:05:30Z""#)
        );
    }

    #[test]
    fn lease_round_trips_and_reads_absent_fields_as_zero() {
        let record = LeaderRecord {
            holder_identity: "podid-0".into(),
            lease_duration_seconds: 15,
            acquire_time: Some(ts("2024-05-01T10:00:00.123456Z")),
            renew_time: Some(ts("2024-05-01T10:00:07.5Z")),
            leader_transitions: 2,
        };
        assert_eq!(LeaderRecord::from_lease(&record.to_lease()), record);
        assert_eq!(
            LeaderRecord::from_lease(&LeaseSpec::default()),
            LeaderRecord::default()
        );
    }

    #[test]
    fn a_released_record_names_nobody_and_keeps_the_transitions() {
        let now = ts("2024-05-01T11:00:00Z");
        let held = LeaderRecord {
            holder_identity: "podid-0".into(),
            lease_duration_seconds: 15,
            leader_transitions: 4,
            ..LeaderRecord::default()
        };
        let released = held.released(now);
        assert_eq!(released.holder_identity, "");
        assert_eq!(released.lease_duration_seconds, 1);
        assert_eq!(released.leader_transitions, 4);
        assert_eq!(released.renew_time, Some(now));
    }
}
