//! The one error type of the test kit.

use std::time::Duration;

/// What went wrong while preparing or talking to the test control plane.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "the kubeconfig's server {server:?} is not on 127.0.0.0/8; tests only talk to a loopback \
         control plane (start one with `scripts/control-plane up`)"
    )]
    NotLoopback { server: String },

    #[error("cannot read kubeconfig {path}: {source}")]
    Kubeconfig {
        path: String,
        #[source]
        source: kube::config::KubeconfigError,
    },

    #[error("cannot start the control plane with {script}: {detail}")]
    ControlPlane { script: String, detail: String },

    #[error("YAML document {index} is not valid: {detail}")]
    Yaml { index: usize, detail: String },

    #[error(
        "YAML document {index} has no {field}; every manifest needs apiVersion, kind and metadata.name"
    )]
    MissingField { index: usize, field: &'static str },

    #[error("apiVersion {api_version:?} is not group/version or version: {detail}")]
    BadApiVersion { api_version: String, detail: String },

    #[error("the API server does not serve {api_version}/{kind}: {source}")]
    UnknownKind {
        api_version: String,
        kind: String,
        #[source]
        source: kube::Error,
    },

    #[error("the manifest's RBAC for ServiceAccount {service_account} is unusable: {detail}")]
    Rbac {
        service_account: String,
        detail: String,
    },

    #[error("timed out after {timeout:?} waiting for {what}; last observation: {last}")]
    Timeout {
        what: String,
        timeout: Duration,
        last: String,
    },

    #[error(transparent)]
    Kube(#[from] kube::Error),
}
