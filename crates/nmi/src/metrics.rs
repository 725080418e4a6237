//! NMI's Prometheus metrics under upstream's names (`aadpodidentity_…`), plus the token cache's
//! hits and misses.
//!
//! Upstream exported counters through OpenCensus without the `_total` suffix
//! (`aadpodidentity_imds_operations_errors_count`); dashboards query those names, so they are
//! kept, typed `unknown` because OpenMetrics requires `_total` on a `counter`. The new cache
//! counters follow today's convention and end in `_total`.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

/// Upstream's prefix (OpenCensus namespace `aadpodidentity`).
const PREFIX: &str = "aadpodidentity";

const NMI_BUCKETS: [f64; 18] = [
    0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0,
    100.0,
];
const IMDS_BUCKETS: [f64; 10] = [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0];

/// A counter exposed without `_total`, as upstream named its counts.
#[derive(Debug, Default)]
pub struct UpstreamCounter(AtomicU64);

impl UpstreamCounter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl TypedMetric for UpstreamCounter {
    const TYPE: MetricType = MetricType::Unknown;
}

impl EncodeMetric for UpstreamCounter {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), fmt::Error> {
        encoder.encode_gauge(&self.get())
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// `nmi_operations_duration_seconds` labels.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RequestLabels {
    /// The request path as sent, as upstream recorded it.
    pub operation_type: String,
    pub status_code: String,
    /// The calling pod's namespace, empty when unknown.
    pub namespace: String,
    pub resource: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct OperationLabels {
    pub operation_type: String,
}

/// Which kind of token acquisition, in upstream's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenOperation {
    /// IMDS without a selector (the node's system-assigned or only identity).
    SystemAssigned,
    /// IMDS for a named user-assigned identity.
    UserAssigned,
    /// Entra ID for a service principal.
    ServicePrincipal,
}

impl TokenOperation {
    fn label(self) -> OperationLabels {
        let name = match self {
            Self::SystemAssigned => "adal_token_msi",
            Self::UserAssigned => "adal_token_msi_userassignedid",
            Self::ServicePrincipal => "adal_token",
        };
        OperationLabels {
            operation_type: name.to_owned(),
        }
    }
}

/// Kubernetes reads that can fail while serving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KubeOperation {
    /// The caller's pod was not found among this node's pods.
    GetPodList,
    GetSecret,
}

/// Every metric NMI records, and the registry that exposes them.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Histogram>,
    token_durations: Family<OperationLabels, Histogram>,
    token_errors: Family<OperationLabels, UpstreamCounter>,
    kube_errors: Family<OperationLabels, UpstreamCounter>,
    cache_hits: Counter,
    cache_misses: Counter,
    waiting: Gauge,
}

/// Counts one request as waiting for an assignment while it lives: dropped when the wait ends
/// however it ends (answered, failed, or the client went away and the request was dropped).
pub struct Waiting<'a>(&'a Gauge);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix(PREFIX);
        let requests = Family::<RequestLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(NMI_BUCKETS)) as fn() -> Histogram,
        );
        let token_durations = Family::<OperationLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(IMDS_BUCKETS)) as fn() -> Histogram,
        );
        let token_errors = Family::<OperationLabels, UpstreamCounter>::default();
        let kube_errors = Family::<OperationLabels, UpstreamCounter>::default();
        let cache_hits = Counter::default();
        let cache_misses = Counter::default();
        let waiting = Gauge::default();
        registry.register(
            "nmi_operations_duration_seconds",
            "Duration of token requests, by path, status, pod namespace and resource",
            requests.clone(),
        );
        registry.register(
            "imds_operations_duration_seconds",
            "Duration of successful token acquisitions from IMDS or Entra ID",
            token_durations.clone(),
        );
        registry.register(
            "imds_operations_errors_count",
            "Failed token acquisitions from IMDS or Entra ID",
            token_errors.clone(),
        );
        registry.register(
            "kubernetes_api_operations_errors_count",
            "Failed Kubernetes reads while serving tokens",
            kube_errors.clone(),
        );
        registry.register(
            "nmi_token_cache_hits",
            "Token requests answered from the token cache",
            cache_hits.clone(),
        );
        registry.register(
            "nmi_token_cache_misses",
            "Token requests that fetched a token",
            cache_misses.clone(),
        );
        registry.register(
            "nmi_requests_waiting_for_assignment",
            "Token requests waiting for the pod's AzureAssignedIdentity to become Assigned",
            waiting.clone(),
        );
        Self {
            registry,
            requests,
            token_durations,
            token_errors,
            kube_errors,
            cache_hits,
            cache_misses,
            waiting,
        }
    }

    pub fn request(&self, labels: RequestLabels, duration: Duration) {
        self.requests
            .get_or_create(&labels)
            .observe(duration.as_secs_f64());
    }

    pub fn token_fetched(&self, operation: TokenOperation, duration: Duration) {
        self.token_durations
            .get_or_create(&operation.label())
            .observe(duration.as_secs_f64());
    }

    pub fn token_failed(&self, operation: TokenOperation) {
        self.token_errors.get_or_create(&operation.label()).inc();
    }

    pub fn kube_failed(&self, operation: KubeOperation) {
        let name = match operation {
            KubeOperation::GetPodList => "get_pod_list",
            KubeOperation::GetSecret => "get_secret",
        };
        self.kube_errors
            .get_or_create(&OperationLabels {
                operation_type: name.to_owned(),
            })
            .inc();
    }

    pub fn cache_hit(&self) {
        self.cache_hits.inc();
    }

    pub fn cache_miss(&self) {
        self.cache_misses.inc();
    }

    /// Marks a request as waiting for an assignment until the guard is dropped.
    pub fn waiting(&self) -> Waiting<'_> {
        self.waiting.inc();
        Waiting(&self.waiting)
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> Result<String, fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_names_have_no_total_suffix_and_cache_counters_do() {
        let metrics = Metrics::new();
        metrics.kube_failed(KubeOperation::GetPodList);
        metrics.token_failed(TokenOperation::UserAssigned);
        metrics.token_fetched(TokenOperation::ServicePrincipal, Duration::from_millis(30));
        metrics.request(
            RequestLabels {
                operation_type: "/metadata/identity/oauth2/token".into(),
                status_code: "200".into(),
                namespace: "team".into(),
                resource: "https://vault.azure.net".into(),
            },
            Duration::from_secs(1),
        );
        metrics.cache_hit();
        let waiting = metrics.waiting();
        let text = metrics.encode().unwrap();
        drop(waiting);
        let after = metrics.encode().unwrap();
        assert!(
            after
                .lines()
                .any(|l| l == "aadpodidentity_nmi_requests_waiting_for_assignment 0"),
            "{after}"
        );
        for line in [
            "aadpodidentity_kubernetes_api_operations_errors_count{operation_type=\"get_pod_list\"} 1",
            "aadpodidentity_imds_operations_errors_count{operation_type=\"adal_token_msi_userassignedid\"} 1",
            "aadpodidentity_imds_operations_duration_seconds_count{operation_type=\"adal_token\"} 1",
            "aadpodidentity_nmi_operations_duration_seconds_count{operation_type=\"/metadata/identity/oauth2/token\",status_code=\"200\",namespace=\"team\",resource=\"https://vault.azure.net\"} 1",
            "aadpodidentity_nmi_token_cache_hits_total 1",
            "aadpodidentity_nmi_token_cache_misses_total 0",
            "aadpodidentity_nmi_requests_waiting_for_assignment 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
    }
}
