//! ARM's two throttling layers (azure-wire.md §3.8), on the emulator's clock: the front door's
//! per-subscription, per-principal token buckets for reads and writes, and the compute resource
//! provider's named windows per subscription and region (`PutVM3Min`, …).

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::error::ArmError;
use crate::clock::arm_timestamp;

/// A token bucket: holds up to `capacity` requests and refills `refillPerSecond`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BucketKnob {
    /// Requests a principal may burst.
    pub capacity: f64,
    /// Tokens added back per second.
    pub refill_per_second: f64,
}

/// One compute-RP throttling policy: at most `limit` requests per fixed `windowSeconds` window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyKnob {
    /// The name shown in `x-ms-ratelimit-remaining-resource` (`Microsoft.Compute/<name>;<n>`).
    pub name: String,
    pub window_seconds: u64,
    pub limit: u64,
}

fn policy(name: &str, window_seconds: u64, limit: u64) -> PolicyKnob {
    PolicyKnob {
        name: name.to_string(),
        window_seconds,
        limit,
    }
}

/// The compute-RP policies each operation is charged against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct ComputePolicies {
    /// VM GET.
    pub vm_get: Vec<PolicyKnob>,
    /// VM PATCH and PUT.
    pub vm_update: Vec<PolicyKnob>,
    /// Listing the VMs of a resource group.
    pub vm_list: Vec<PolicyKnob>,
    /// Scale set GET.
    pub scale_set_get: Vec<PolicyKnob>,
    /// Scale set PATCH and PUT. The real policy name is not confirmed (a guess).
    pub scale_set_update: Vec<PolicyKnob>,
    /// Listing a scale set's instances.
    pub scale_set_instances: Vec<PolicyKnob>,
    /// Polling an asynchronous operation.
    pub operation_get: Vec<PolicyKnob>,
}

impl Default for ComputePolicies {
    fn default() -> Self {
        Self {
            vm_get: vec![
                policy("LowCostGet3Min", 180, 4000),
                policy("LowCostGet30Min", 1800, 32000),
            ],
            vm_update: vec![
                policy("PutVM3Min", 180, 240),
                policy("PutVM30Min", 1800, 1200),
            ],
            vm_list: vec![
                policy("HighCostGet3Min", 180, 900),
                policy("HighCostGet30Min", 1800, 7200),
            ],
            scale_set_get: vec![
                policy("GetVMScaleSet3Min", 180, 200),
                policy("GetVMScaleSet30Min", 1800, 1300),
            ],
            scale_set_update: vec![
                policy("VMScaleSetUpdate3Min", 180, 60),
                policy("VMScaleSetUpdate30Min", 1800, 300),
            ],
            scale_set_instances: vec![
                policy("HighCostGetVMScaleSet3Min", 180, 900),
                policy("HighCostGetVMScaleSet30Min", 1800, 5000),
            ],
            operation_get: vec![
                policy("GetOperation3Min", 180, 15000),
                policy("GetOperation30Min", 1800, 30000),
            ],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    Read,
    Write,
}

impl Access {
    /// GETs are reads; every other method is a write.
    pub fn of(method: &str) -> Self {
        if method.eq_ignore_ascii_case("GET") {
            Access::Read
        } else {
            Access::Write
        }
    }

    fn word(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Write => "write",
        }
    }

    /// The response header carrying what is left in this bucket.
    pub fn header(self) -> &'static str {
        match self {
            Access::Read => "x-ms-ratelimit-remaining-subscription-reads",
            Access::Write => "x-ms-ratelimit-remaining-subscription-writes",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    pub tokens: f64,
    pub updated: SystemTime,
}

/// Takes one token: `Ok(remaining)` or `Err(retry after, whole seconds ≥ 1)`.
pub fn take_token(bucket: &mut Bucket, knob: &BucketKnob, now: SystemTime) -> Result<u64, u64> {
    let elapsed = now.duration_since(bucket.updated).unwrap_or(Duration::ZERO);
    bucket.tokens =
        (bucket.tokens + elapsed.as_secs_f64() * knob.refill_per_second).min(knob.capacity);
    bucket.updated = now;
    if bucket.tokens >= 1.0 {
        bucket.tokens -= 1.0;
        // Truncation is the point: a header shows whole requests left.
        Ok(bucket.tokens.floor() as u64)
    } else {
        Err(seconds_until_refilled(
            1.0 - bucket.tokens,
            knob.refill_per_second,
        ))
    }
}

fn seconds_until_refilled(missing: f64, rate: f64) -> u64 {
    if rate <= 0.0 {
        return 3600;
    }
    ((missing / rate).ceil() as u64).max(1)
}

/// Rounds up: a client told to wait less than the window has left would be refused again.
fn whole_seconds_up(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    pub start: SystemTime,
    pub count: u64,
}

/// The outcome of charging one request to a compute policy window.
#[derive(Debug, Clone, PartialEq)]
pub struct Charge {
    pub remaining: u64,
    /// Set when the window is already full: the 429 to answer.
    pub exceeded: Option<ArmError>,
}

/// Counts one request in `policy`'s current window (a new window starts once the old one ends).
pub fn charge(window: &mut Window, policy: &PolicyKnob, now: SystemTime) -> Charge {
    let length = Duration::from_secs(policy.window_seconds.max(1));
    if now >= window.start + length || now < window.start {
        *window = Window {
            start: now,
            count: 0,
        };
    }
    window.count += 1;
    if window.count <= policy.limit {
        return Charge {
            remaining: policy.limit - window.count,
            exceeded: None,
        };
    }
    let end = window.start + length;
    let retry_after = whole_seconds_up(end.duration_since(now).unwrap_or(Duration::ZERO)).max(1);
    let detail = json!({
        "operationGroup": policy.name,
        "startTime": arm_timestamp(window.start),
        "endTime": arm_timestamp(end),
        "allowedRequestCount": policy.limit,
        "measuredRequestCount": window.count,
    });
    let mut error = ArmError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "OperationNotAllowed",
        "The server rejected the request because too many requests have been received for this subscription.",
    )
    .with_header("retry-after", retry_after.to_string());
    error.more.details = vec![
        json!({"code": "TooManyRequests", "target": policy.name, "message": detail.to_string()}),
    ];
    error.more.innererror = Some(json!({"internalErrorCode": "TooManyRequestsReceived"}));
    Charge {
        remaining: 0,
        exceeded: Some(error),
    }
}

pub fn subscription_throttled(
    access: Access,
    subscription: &str,
    principal: &str,
    retry_after: u64,
) -> ArmError {
    ArmError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "SubscriptionRequestsThrottled",
        format!(
            "Number of '{}' requests for subscription '{subscription}' actor '{principal}' exceeded. \
             Please try again after '{retry_after}' seconds after additional tokens are available. \
             Refer to https://aka.ms/arm-throttling for additional information.",
            access.word()
        ),
    )
    .with_header("retry-after", retry_after.to_string())
}

/// Throttle state: buckets per (subscription, principal, access), windows per (subscription,
/// region, policy). Keys are lower-case.
#[derive(Debug, Default)]
pub struct Throttle {
    pub buckets: HashMap<(String, String, Access), Bucket>,
    pub windows: HashMap<(String, String, String), Window>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_empties_then_names_a_whole_second_wait() {
        let knob = BucketKnob {
            capacity: 2.0,
            refill_per_second: 0.5,
        };
        let t0 = SystemTime::UNIX_EPOCH;
        let mut b = Bucket {
            tokens: 2.0,
            updated: t0,
        };
        assert_eq!(take_token(&mut b, &knob, t0), Ok(1));
        assert_eq!(take_token(&mut b, &knob, t0), Ok(0));
        assert_eq!(take_token(&mut b, &knob, t0), Err(2));
        assert_eq!(
            take_token(&mut b, &knob, t0 + Duration::from_secs(2)),
            Ok(0)
        );
    }

    #[test]
    fn a_full_window_answers_the_crp_429_until_it_ends() {
        let p = policy("PutVM3Min", 180, 1);
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600);
        let mut w = Window {
            start: t0,
            count: 0,
        };
        assert_eq!(charge(&mut w, &p, t0).remaining, 0);
        let c = charge(&mut w, &p, t0 + Duration::from_secs(60));
        let e = c.exceeded.expect("throttled");
        assert_eq!(e.headers, vec![("retry-after", "120".to_string())]);
        let message: serde_json::Value =
            serde_json::from_str(e.more.details[0]["message"].as_str().expect("string"))
                .expect("json inside");
        assert_eq!(message["allowedRequestCount"], 1);
        assert_eq!(message["measuredRequestCount"], 2);
        assert_eq!(message["startTime"], "2026-01-01T00:00:00.0000000+00:00");
        assert!(
            charge(&mut w, &p, t0 + Duration::from_secs(180))
                .exceeded
                .is_none()
        );
    }

    #[test]
    fn the_crp_retry_after_rounds_up_to_the_end_of_the_window() {
        let p = policy("PutVM3Min", 180, 1);
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600);
        let retry_after = |left: Duration| {
            let mut w = Window {
                start: t0,
                count: 1,
            };
            let now = t0 + Duration::from_secs(180) - left;
            let e = charge(&mut w, &p, now).exceeded.expect("throttled");
            e.headers[0].1.clone()
        };
        assert_eq!(retry_after(Duration::from_millis(300)), "1");
        assert_eq!(retry_after(Duration::from_millis(1_300)), "2");
        assert_eq!(retry_after(Duration::from_millis(120_500)), "121");
        assert_eq!(retry_after(Duration::from_secs(120)), "120");
    }

    #[test]
    fn whole_seconds_round_up_and_keep_exact_values() {
        assert_eq!(whole_seconds_up(Duration::ZERO), 0);
        assert_eq!(whole_seconds_up(Duration::from_nanos(1)), 1);
        assert_eq!(whole_seconds_up(Duration::from_secs(3)), 3);
        assert_eq!(whole_seconds_up(Duration::from_millis(2_001)), 3);
    }
}
