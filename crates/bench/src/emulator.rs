//! The Azure emulator's admin API, as the benchmarks read it.

use std::collections::BTreeMap;

use anyhow::Context;
use serde_json::Value;

/// Requests per emulator operation (`arm.vmss.get`, …) and answer status.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counters(pub BTreeMap<String, BTreeMap<String, u64>>);

impl Counters {
    pub async fn read(http: &reqwest::Client, admin: &str) -> anyhow::Result<Self> {
        let body: Value = http
            .get(format!("{admin}/admin/counters"))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let mut counters = BTreeMap::new();
        for (operation, counts) in body.as_object().context("counters are an object")? {
            let by_status = counts["byStatus"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(status, n)| (status.clone(), n.as_u64().unwrap_or_default()))
                        .collect()
                })
                .unwrap_or_default();
            counters.insert(operation.clone(), by_status);
        }
        Ok(Self(counters))
    }

    /// Requests of `operation` with any status.
    pub fn total(&self, operation: &str) -> u64 {
        self.0
            .get(operation)
            .map(|m| m.values().sum())
            .unwrap_or_default()
    }

    /// Requests of every operation starting with `prefix` answered with `status`.
    pub fn with_status(&self, prefix: &str, status: &str) -> u64 {
        self.0
            .iter()
            .filter(|(op, _)| op.starts_with(prefix))
            .filter_map(|(_, m)| m.get(status))
            .sum()
    }
}

/// Clears the emulator's journal and counters.
pub async fn clear_counters(http: &reqwest::Client, admin: &str) -> anyhow::Result<()> {
    http.delete(format!("{admin}/admin/journal"))
        .send()
        .await?
        .error_for_status()?;
    Ok(())
}

/// Applies a JSON merge patch to the knobs.
pub async fn set_knobs(http: &reqwest::Client, admin: &str, patch: &Value) -> anyhow::Result<()> {
    let reply = http
        .patch(format!("{admin}/admin/knobs"))
        .json(patch)
        .send()
        .await?;
    let status = reply.status();
    anyhow::ensure!(
        status.is_success(),
        "knobs {patch}: {status} {}",
        reply.text().await?
    );
    Ok(())
}

/// `GET /admin/world`.
pub async fn world(http: &reqwest::Client, admin: &str) -> anyhow::Result<Value> {
    Ok(http
        .get(format!("{admin}/admin/world"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?)
}
