//! ARM's remaining-request counters, read from every answer so the controller can pace
//! itself before ARM throttles it.

use std::collections::BTreeMap;

use reqwest::header::HeaderMap;

const SUBSCRIPTION_READS: &str = "x-ms-ratelimit-remaining-subscription-reads";
const SUBSCRIPTION_WRITES: &str = "x-ms-ratelimit-remaining-subscription-writes";
const RESOURCE: &str = "x-ms-ratelimit-remaining-resource";

/// What ARM said is left: the subscription's read and write budgets, and the compute
/// resource provider's per-policy budgets (`Microsoft.Compute/GetVMScaleSet3Min` → 197).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RateLimits {
    pub subscription_reads: Option<u64>,
    pub subscription_writes: Option<u64>,
    pub resource: BTreeMap<String, u64>,
}

impl RateLimits {
    /// Reads the counters of one answer. The resource header comes either as one value with
    /// comma-joined `policy;remaining` entries or as repeated headers; malformed entries are
    /// skipped.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let number = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse().ok())
        };
        let resource = headers
            .get_all(RESOURCE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|entry| {
                let (policy, remaining) = entry.trim().rsplit_once(';')?;
                Some((policy.trim().to_string(), remaining.trim().parse().ok()?))
            })
            .collect();
        Self {
            subscription_reads: number(SUBSCRIPTION_READS),
            subscription_writes: number(SUBSCRIPTION_WRITES),
            resource,
        }
    }

    /// Counters from a later answer replace the ones they name.
    pub fn merge(&mut self, newer: RateLimits) {
        if newer.subscription_reads.is_some() {
            self.subscription_reads = newer.subscription_reads;
        }
        if newer.subscription_writes.is_some() {
            self.subscription_writes = newer.subscription_writes;
        }
        self.resource.extend(newer.resource);
    }

    /// The resource-provider policy closest to running out.
    pub fn lowest_resource(&self) -> Option<(&str, u64)> {
        self.resource
            .iter()
            .min_by_key(|(_, remaining)| **remaining)
            .map(|(policy, remaining)| (policy.as_str(), *remaining))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn reads_subscription_and_joined_resource_counters() {
        let limits = RateLimits::from_headers(&headers(&[
            (SUBSCRIPTION_READS, "11999"),
            (
                RESOURCE,
                "Microsoft.Compute/GetVMScaleSet3Min;197,Microsoft.Compute/GetVMScaleSet30Min;1297",
            ),
        ]));
        assert_eq!(limits.subscription_reads, Some(11999));
        assert_eq!(limits.subscription_writes, None);
        assert_eq!(limits.resource["Microsoft.Compute/GetVMScaleSet3Min"], 197);
        assert_eq!(
            limits.resource["Microsoft.Compute/GetVMScaleSet30Min"],
            1297
        );
        assert_eq!(
            limits.lowest_resource(),
            Some(("Microsoft.Compute/GetVMScaleSet3Min", 197))
        );
    }

    #[test]
    fn reads_repeated_resource_headers_and_skips_junk() {
        let limits = RateLimits::from_headers(&headers(&[
            (SUBSCRIPTION_WRITES, "1199"),
            (RESOURCE, "Microsoft.Compute/PutVM3Min;239"),
            (RESOURCE, " Microsoft.Compute/PutVM30Min ; 1199 , junk, x;y"),
        ]));
        assert_eq!(limits.subscription_writes, Some(1199));
        assert_eq!(limits.resource.len(), 2);
        assert_eq!(limits.resource["Microsoft.Compute/PutVM30Min"], 1199);
        assert_eq!(
            RateLimits::from_headers(&HeaderMap::new()),
            RateLimits::default()
        );
    }

    #[test]
    fn newer_counters_replace_older_ones() {
        let mut limits = RateLimits::from_headers(&headers(&[
            (SUBSCRIPTION_READS, "10"),
            (SUBSCRIPTION_WRITES, "5"),
            (RESOURCE, "A;1,B;2"),
        ]));
        limits.merge(RateLimits::from_headers(&headers(&[
            (SUBSCRIPTION_READS, "9"),
            (RESOURCE, "B;7"),
        ])));
        assert_eq!(limits.subscription_reads, Some(9));
        assert_eq!(limits.subscription_writes, Some(5));
        assert_eq!(limits.resource["A"], 1);
        assert_eq!(limits.resource["B"], 7);
    }
}
