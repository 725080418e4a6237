//! Upstream's MIC metrics (docs/mic.md, "Metrics"), under the same names: prefix
//! `aadpodidentity_`, counters without `_total`, durations in seconds.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::{
    EncodeLabelSet, EncodeLabelValue, EncodeMetric, MetricEncoder, text,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

/// Buckets of the Kubernetes write durations.
const API_BUCKETS: [f64; 18] = [
    0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 2.0, 3.0, 4.0, 5.0, 10.0,
];
/// Buckets of cycle and ARM durations.
const LONG_BUCKETS: [f64; 11] = [
    0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1200.0,
];

/// A counter exposed under its own name: upstream's OpenCensus counters had no `_total`
/// suffix, which prometheus-client's counter type always adds.
#[derive(Debug, Clone, Default)]
pub struct PlainCounter(Counter<u64, AtomicU64>);

impl PlainCounter {
    pub fn inc(&self) {
        self.0.inc();
    }

    pub fn get(&self) -> u64 {
        self.0.get()
    }
}

impl TypedMetric for PlainCounter {
    const TYPE: MetricType = MetricType::Unknown;
}

impl EncodeMetric for PlainCounter {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_gauge(&(self.0.get() as i64))
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// `operation_type` of the ARM metrics.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum ArmOperationLabel {
    vm_get,
    vm_update,
    vmss_get,
    vmss_update,
}

/// An ARM call, as the metrics name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArmOperation {
    VmGet,
    VmUpdate,
    VmssGet,
    VmssUpdate,
}

impl ArmOperation {
    fn label(self) -> ArmLabels {
        ArmLabels {
            operation_type: match self {
                Self::VmGet => ArmOperationLabel::vm_get,
                Self::VmUpdate => ArmOperationLabel::vm_update,
                Self::VmssGet => ArmOperationLabel::vmss_get,
                Self::VmssUpdate => ArmOperationLabel::vmss_update,
            },
        }
    }
}

/// A Kubernetes write, as the metrics name it.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum KubeOperation {
    assigned_identity_addition,
    assigned_identity_deletion,
    assigned_identity_update,
    update_azure_assigned_identity_status,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ArmLabels {
    operation_type: ArmOperationLabel,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KubeLabels {
    operation_type: KubeOperation,
}

fn histogram(buckets: &'static [f64]) -> impl Fn() -> Histogram + Clone {
    move || Histogram::new(buckets.iter().copied())
}

struct Inner {
    registry: Registry,
    addition_duration: Histogram,
    addition_count: PlainCounter,
    deletion_duration: Histogram,
    deletion_count: PlainCounter,
    update_duration: Histogram,
    update_count: PlainCounter,
    cycle_duration: Histogram,
    cycle_count: PlainCounter,
    leader_elections: PlainCounter,
    arm_errors: Family<ArmLabels, PlainCounter>,
    arm_duration: Family<ArmLabels, Histogram, fn() -> Histogram>,
    kube_errors: Family<KubeLabels, PlainCounter>,
}

/// MIC's metrics; clones share them.
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("aadpodidentity");
        let api = histogram(&API_BUCKETS);
        let long = histogram(&LONG_BUCKETS);
        let inner = Inner {
            addition_duration: api(),
            addition_count: PlainCounter::default(),
            deletion_duration: api(),
            deletion_count: PlainCounter::default(),
            update_duration: api(),
            update_count: PlainCounter::default(),
            cycle_duration: long(),
            cycle_count: PlainCounter::default(),
            leader_elections: PlainCounter::default(),
            arm_errors: Family::default(),
            arm_duration: Family::new_with_constructor(|| {
                Histogram::new(LONG_BUCKETS.iter().copied())
            }),
            kube_errors: Family::default(),
            registry: Registry::default(),
        };
        for (name, help, metric) in [
            (
                "assigned_identity_addition_duration_seconds",
                "Duration of AzureAssignedIdentity creations",
                &inner.addition_duration,
            ),
            (
                "assigned_identity_deletion_duration_seconds",
                "Duration of AzureAssignedIdentity deletions",
                &inner.deletion_duration,
            ),
            (
                "assigned_identity_update_duration_seconds",
                "Duration of AzureAssignedIdentity updates",
                &inner.update_duration,
            ),
            (
                "mic_cycle_duration_seconds",
                "Duration of MIC cycles that did work",
                &inner.cycle_duration,
            ),
        ] {
            registry.register(name, help, metric.clone());
        }
        for (name, help, metric) in [
            (
                "assigned_identity_addition_count",
                "AzureAssignedIdentities created",
                &inner.addition_count,
            ),
            (
                "assigned_identity_deletion_count",
                "AzureAssignedIdentities deleted",
                &inner.deletion_count,
            ),
            (
                "assigned_identity_update_count",
                "AzureAssignedIdentities updated",
                &inner.update_count,
            ),
            (
                "mic_cycle_count",
                "MIC cycles that did work",
                &inner.cycle_count,
            ),
            (
                "mic_new_leader_election_count",
                "Leader elections started",
                &inner.leader_elections,
            ),
        ] {
            registry.register(name, help, metric.clone());
        }
        registry.register(
            "cloud_provider_operations_errors_count",
            "Failed ARM calls",
            inner.arm_errors.clone(),
        );
        registry.register(
            "cloud_provider_operations_duration_seconds",
            "Duration of successful ARM calls",
            inner.arm_duration.clone(),
        );
        registry.register(
            "kubernetes_api_operations_errors_count",
            "Failed Kubernetes API calls",
            inner.kube_errors.clone(),
        );
        Self(Arc::new(Inner { registry, ..inner }))
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = text::encode(&mut out, &self.0.registry);
        out
    }

    pub fn kube_ok(&self, operation: KubeOperation, took: Duration) {
        let (histogram, counter) = match operation {
            KubeOperation::assigned_identity_addition => {
                (&self.0.addition_duration, &self.0.addition_count)
            }
            KubeOperation::assigned_identity_deletion => {
                (&self.0.deletion_duration, &self.0.deletion_count)
            }
            KubeOperation::assigned_identity_update => {
                (&self.0.update_duration, &self.0.update_count)
            }
            KubeOperation::update_azure_assigned_identity_status => return,
        };
        histogram.observe(took.as_secs_f64());
        counter.inc();
    }

    pub fn kube_error(&self, operation: KubeOperation) {
        self.0
            .kube_errors
            .get_or_create(&KubeLabels {
                operation_type: operation,
            })
            .inc();
    }

    pub fn arm_ok(&self, operation: ArmOperation, took: Duration) {
        self.0
            .arm_duration
            .get_or_create(&operation.label())
            .observe(took.as_secs_f64());
    }

    pub fn arm_error(&self, operation: ArmOperation) {
        self.0.arm_errors.get_or_create(&operation.label()).inc();
    }

    pub fn cycle(&self, took: Duration) {
        self.0.cycle_duration.observe(took.as_secs_f64());
        self.0.cycle_count.inc();
    }

    pub fn leader_election_started(&self) {
        self.0.leader_elections.inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_upstreams() {
        let metrics = Metrics::new();
        metrics.cycle(Duration::from_millis(700));
        metrics.arm_error(ArmOperation::VmssUpdate);
        metrics.arm_ok(ArmOperation::VmssGet, Duration::from_secs(1));
        metrics.kube_ok(
            KubeOperation::assigned_identity_addition,
            Duration::from_millis(30),
        );
        metrics.kube_error(KubeOperation::update_azure_assigned_identity_status);
        let text = metrics.encode();
        for line in [
            "aadpodidentity_mic_cycle_count 1\n",
            "aadpodidentity_mic_cycle_duration_seconds_count 1\n",
            "aadpodidentity_assigned_identity_addition_count 1\n",
            "aadpodidentity_cloud_provider_operations_errors_count{operation_type=\"vmss_update\"} 1\n",
            "aadpodidentity_cloud_provider_operations_duration_seconds_count{operation_type=\"vmss_get\"} 1\n",
            "aadpodidentity_kubernetes_api_operations_errors_count{operation_type=\"update_azure_assigned_identity_status\"} 1\n",
        ] {
            assert!(text.contains(line), "{line:?} missing from:\n{text}");
        }
        assert!(!text.contains("_total"), "{text}");
    }
}
