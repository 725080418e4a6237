//! Azure clients shared by podid's controller (MIC) and node agent (NMI).
//!
//! - [`credential`]: tokens from IMDS (managed identities, by client ID, object ID, resource ID
//!   or none) and from Entra ID (service principals with a secret or a PKCS#12 certificate,
//!   v1 or v2 endpoint), each keeping the response fields as received, with errors that say
//!   whether to try again.
//! - [`arm`]: VM and scale-set GET and identity PATCH through long-running operations, the
//!   pure planning of those PATCHes, typed ARM errors (throttling with `Retry-After`, the
//!   identities ARM refused) and the remaining-request counters.
//! - [`config`] and [`cloud`]: upstream's `azure.json` (or its environment variables) and
//!   the cloud it names, built in or from a custom environment file.
//! - [`resource_id`]: ARM resource IDs, parsed in one place, compared ignoring case.
//! - [`http`]: the HTTP clients (timeouts, User-Agent, an extra CA; IMDS never via a proxy).
//!
//! Nothing here picks an endpoint on its own: the IMDS address ([`credential::IMDS_ENDPOINT`])
//! and the cloud's endpoints are always passed in, so tests point everything at an emulator.
//! docs/azure-clients.md describes the design.

pub mod arm;
pub mod cloud;
pub mod config;
pub mod credential;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod resource_id;
mod wire;
