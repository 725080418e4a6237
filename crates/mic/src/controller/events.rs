//! Kubernetes events with upstream's reasons (docs/mic.md, "Events"), written as core/v1
//! Events (the kind MIC's ClusterRole may create and patch). The same event repeated within
//! a window is not written again; after it, its count is patched, as client-go aggregates.

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// `source.component` of MIC's events, as upstream.
pub const COMPONENT: &str = "aadpodidentity.k8s.io";
/// Events kept for aggregation; beyond this the memory is cleared.
const MAX_REMEMBERED: usize = 4096;

/// Upstream's reasons, and podid's for inputs upstream only logged.
pub mod reason {
    pub const BINDING_APPLIED: &str = "binding applied";
    pub const BINDING_APPLY_ERROR: &str = "binding apply error";
    pub const STATUS_UPDATE_ERROR: &str = "status update error";
    pub const BINDING_REMOVED: &str = "binding removed";
    pub const BINDING_REMOVE_ERROR: &str = "binding remove error";
    /// podid: an AzureIdentity that cannot be used.
    pub const INVALID_IDENTITY: &str = "invalid identity";
    /// podid: a node whose providerID names no VM or scale set.
    pub const INVALID_PROVIDER_ID: &str = "invalid provider ID";
    /// podid: a labelled pod that gets no identity.
    pub const NO_IDENTITY: &str = "no identity";
}

/// The object an event is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Involved {
    pub api_version: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
    pub uid: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Severity {
    Normal,
    Warning,
}

struct Sent {
    name: String,
    namespace: String,
    count: i32,
    at: Instant,
}

/// Hands events to a task that writes them, so a cycle never waits for them (a cycle that
/// assigns 1,000 identities would otherwise wait for 1,000 event POSTs, one by one). The task
/// is aborted with the recorder: nothing is written after the term ends.
pub struct Recorder {
    queue: mpsc::UnboundedSender<Pending>,
    writer: tokio::task::AbortHandle,
}

struct Pending {
    involved: Involved,
    severity: Severity,
    reason: &'static str,
    message: String,
}

impl Recorder {
    /// `window`: how long a repeated event is not written again. Needs a tokio runtime.
    pub fn new(client: Client, window: Duration) -> Self {
        let (queue, mut pending) = mpsc::unbounded_channel::<Pending>();
        let mut writer = Writer {
            client,
            window,
            sent: HashMap::new(),
        };
        let task = tokio::spawn(async move {
            while let Some(event) = pending.recv().await {
                writer.write(event).await;
            }
        });
        Self {
            queue,
            writer: task.abort_handle(),
        }
    }

    /// Records one event, in order with the others. Failures are logged, never returned: an
    /// event is not worth a retry.
    pub fn record(
        &mut self,
        involved: &Involved,
        severity: Severity,
        reason: &'static str,
        message: String,
    ) {
        let event = Pending {
            involved: involved.clone(),
            severity,
            reason,
            message,
        };
        // The task ends only when aborted with the recorder.
        let _ = self.queue.send(event);
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.writer.abort();
    }
}

/// Writes events; remembers recent ones to aggregate repeats.
struct Writer {
    client: Client,
    window: Duration,
    sent: HashMap<(Involved, &'static str, String), Sent>,
}

impl Writer {
    async fn write(&mut self, event: Pending) {
        let Pending {
            involved,
            severity,
            reason,
            message,
        } = event;
        let involved = &involved;
        let now = Instant::now();
        let key = (involved.clone(), reason, message.clone());
        if let Some(sent) = self.sent.get_mut(&key) {
            if now.saturating_duration_since(sent.at) < self.window {
                return;
            }
            sent.count += 1;
            sent.at = now;
            let api: Api<Event> = Api::namespaced(self.client.clone(), &sent.namespace);
            let patch = json!({"count": sent.count, "lastTimestamp": Time(k8s_openapi::jiff::Timestamp::now())});
            if let Err(error) = api
                .patch(&sent.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                tracing::debug!(%error, "could not update an event");
            }
            return;
        }
        if self.sent.len() >= MAX_REMEMBERED {
            self.sent.clear();
        }
        let namespace = involved
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_owned());
        let stamp = Time(k8s_openapi::jiff::Timestamp::now());
        let event = Event {
            metadata: ObjectMeta {
                generate_name: Some(format!("{}.", involved.name)),
                namespace: Some(namespace.clone()),
                ..ObjectMeta::default()
            },
            involved_object: ObjectReference {
                api_version: Some(involved.api_version.clone()),
                kind: Some(involved.kind.clone()),
                namespace: involved.namespace.clone(),
                name: Some(involved.name.clone()),
                uid: involved.uid.clone(),
                ..ObjectReference::default()
            },
            reason: Some(reason.to_owned()),
            message: Some(message.clone()),
            type_: Some(
                match severity {
                    Severity::Normal => "Normal",
                    Severity::Warning => "Warning",
                }
                .to_owned(),
            ),
            source: Some(EventSource {
                component: Some(COMPONENT.to_owned()),
                host: None,
            }),
            first_timestamp: Some(stamp.clone()),
            last_timestamp: Some(stamp),
            count: Some(1),
            ..Event::default()
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        match api.create(&PostParams::default(), &event).await {
            Ok(created) => {
                self.sent.insert(
                    key,
                    Sent {
                        name: created.metadata.name.unwrap_or_default(),
                        namespace,
                        count: 1,
                        at: now,
                    },
                );
            }
            Err(error) => tracing::warn!(%error, reason, "could not record an event"),
        }
    }
}
