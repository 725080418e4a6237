//! Why the elector stopped.

/// Errors that end the elector. Transient API errors never do: they are logged and retried,
/// and a leader that cannot renew steps down instead.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("invalid leader election settings: {0}")]
    InvalidConfig(String),

    /// The API server refuses the elector's credentials or RBAC: retrying would not help, and
    /// the process would otherwise never lead without saying why.
    #[error(
        "the API server refused {action} ({code}): {message}; the controller's RBAC must allow \
         get, create and update on leases (coordination.k8s.io) and endpoints in the lock's namespace"
    )]
    Refused {
        action: String,
        code: u16,
        message: String,
    },
}
