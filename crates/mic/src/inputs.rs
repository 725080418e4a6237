//! The facts MIC needs about pods and nodes, as plain data. The controller fills these from
//! its watches; keeping them small keeps the decisions independent of the Kubernetes types.

use k8s_openapi::api::core::v1::Pod;
use podid_api::names::POD_LABEL_KEY;

use crate::ObjectRef;

/// What MIC reads from a pod. The controller keeps one per labelled pod, so it holds only the
/// label MIC reads rather than all of them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodInfo {
    pub namespace: String,
    pub name: String,
    /// The `aadpodidbinding` label's value as set (perhaps empty).
    pub label: Option<String>,
    /// `spec.nodeName`: empty or absent until the scheduler has placed the pod.
    pub node_name: Option<String>,
    pub phase: PodPhase,
}

impl PodInfo {
    /// What MIC reads from the pod object the watch delivered.
    pub fn of(pod: &Pod) -> Self {
        Self {
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            label: pod
                .metadata
                .labels
                .as_ref()
                .and_then(|labels| labels.get(POD_LABEL_KEY).cloned()),
            node_name: pod.spec.as_ref().and_then(|spec| spec.node_name.clone()),
            phase: PodPhase::parse(pod.status.as_ref().and_then(|s| s.phase.as_deref())),
        }
    }

    pub fn object_ref(&self) -> ObjectRef {
        ObjectRef::new(&self.namespace, &self.name)
    }

    /// The value of the `aadpodidbinding` label, when it is set and not empty (upstream
    /// ignores pods with an empty value).
    pub fn selector(&self) -> Option<&str> {
        self.label.as_deref().filter(|value| !value.is_empty())
    }

    /// The node the pod is scheduled on, when it is.
    pub fn node(&self) -> Option<&str> {
        self.node_name.as_deref().filter(|node| !node.is_empty())
    }
}

/// `status.phase` of a pod.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum PodPhase {
    /// Not reported yet (a pod just bound to a node has no status).
    #[default]
    Unreported,
    /// Includes pods whose init containers are running: they may already ask for tokens.
    Pending,
    Running,
    Succeeded,
    Failed,
    /// `Unknown` (the node stopped reporting) or a value this code does not know.
    Other(String),
}

impl PodPhase {
    /// Reads `status.phase`.
    pub fn parse(phase: Option<&str>) -> Self {
        match phase {
            None | Some("") => Self::Unreported,
            Some("Pending") => Self::Pending,
            Some("Running") => Self::Running,
            Some("Succeeded") => Self::Succeeded,
            Some("Failed") => Self::Failed,
            Some(other) => Self::Other(other.to_owned()),
        }
    }

    /// Whether no container of the pod will ever run again: Kubernetes never moves a pod out
    /// of `Succeeded` or `Failed`. `Unknown` is not terminal: the node may come back.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed)
    }
}

/// What MIC reads from a node.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeInfo {
    pub name: String,
    /// `spec.providerID`, e.g. `azure:///subscriptions/…/virtualMachineScaleSets/pool0/virtualMachines/3`.
    pub provider_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_binding_label_is_kept() {
        let mut pod = Pod::default();
        pod.metadata.labels = Some(
            [("app", "web"), (POD_LABEL_KEY, "demo")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        );
        assert_eq!(PodInfo::of(&pod).label.as_deref(), Some("demo"));
        assert_eq!(PodInfo::of(&Pod::default()).label, None);
    }

    #[test]
    fn phases_parse_from_their_wire_spelling() {
        for (text, phase) in [
            (None, PodPhase::Unreported),
            (Some(""), PodPhase::Unreported),
            (Some("Pending"), PodPhase::Pending),
            (Some("Running"), PodPhase::Running),
            (Some("Succeeded"), PodPhase::Succeeded),
            (Some("Failed"), PodPhase::Failed),
            (Some("Unknown"), PodPhase::Other("Unknown".into())),
        ] {
            assert_eq!(PodPhase::parse(text), phase, "{text:?}");
        }
    }

    #[test]
    fn only_succeeded_and_failed_are_terminal() {
        for phase in ["Succeeded", "Failed"] {
            assert!(PodPhase::parse(Some(phase)).is_terminal());
        }
        for phase in [None, Some("Pending"), Some("Running"), Some("Unknown")] {
            assert!(!PodPhase::parse(phase).is_terminal());
        }
    }

    #[test]
    fn an_empty_label_or_node_counts_as_absent() {
        let mut pod = PodInfo {
            label: Some(String::new()),
            node_name: Some(String::new()),
            ..PodInfo::default()
        };
        assert_eq!(pod.selector(), None);
        assert_eq!(pod.node(), None);
        pod.label = Some("demo".into());
        pod.node_name = Some("node-0".into());
        assert_eq!(pod.selector(), Some("demo"));
        assert_eq!(pod.node(), Some("node-0"));
    }
}
