//! podid's node agent (NMI).
//!
//! NMI answers pods on 169.254.169.254:80 (redirected by iptables to its own listener) in
//! IMDS's format, identifying each pod by the source IP of its connection. The decisions are
//! pure functions, with no socket, Kubernetes or Azure call and no clock (docs/nmi.md):
//!
//! 1. [`request`]: listener, method, raw path, raw query and headers → a [`Route`] (token,
//!    host token, proxy, probe, metrics, redirect) or a [`Refusal`];
//! 2. [`pods`]: the source IP and this node's pods → the one calling pod, and whether it is
//!    excepted (served the node's own identity unchecked);
//! 3. [`selection`]: the pod, what it asked for and the AzureAssignedIdentities (standard
//!    mode) or bindings and identities (managed mode) → the [`TokenSource`] that answers, a
//!    wait, or a typed failure;
//! 4. [`response`]: a token (or tokens, with auxiliary tenants) → the IMDS JSON body, and
//!    token failures → IMDS-shaped errors ([`ErrorReply`]).
//!
//! Around them: [`state`] (watch-fed indexes of this node's pods and the identity objects),
//! [`tokens`] (IMDS and Entra ID calls behind a single-flight cache), [`server`] (the
//! listeners), [`iptables`] (the redirect), [`port_guard`] (each pod's bridge port bound to its
//! addresses), [`metrics`], and [`agent`] (flags and startup, what
//! the `nmi` binary runs).

pub mod agent;
pub mod iptables;
pub mod metrics;
pub mod pods;
pub mod port_guard;
pub mod reply;
pub mod request;
pub mod response;
pub mod selection;
pub mod server;
pub mod state;
pub mod tokens;

pub use pods::{
    PassThrough, PodFacts, PodLookupError, PodPhase, exception_for, pod_by_ip, pod_by_name,
};
pub use reply::{ErrorCode, ErrorReply, JSON_CONTENT_TYPE};
pub use request::{
    Listener, RawRequest, Refusal, RequestedIdentity, Route, RouteOptions, TokenQuery, route,
};
pub use response::{TokenContext, host_token_body, token_body, token_failure};
pub use selection::{
    Decision, RetryPolicy, Selected, SelectionError, StandardInputs, TokenSource, select_managed,
    select_standard,
};
