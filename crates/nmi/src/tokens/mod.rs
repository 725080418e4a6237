//! Getting tokens for a [`TokenSource`](crate::TokenSource): from IMDS or Entra ID
//! ([`fetch`]), with the credential read from its Secret ([`secret`]), through a cache that
//! makes one upstream call per key at a time ([`cache`]).

pub mod cache;
pub mod clock;
pub mod fetch;
pub mod secret;

use podid_azure::credential::Token;

pub use cache::{CacheKey, Lookup, TokenCache};
pub use clock::{Clock, SystemClock};
pub use fetch::{FetchError, Fetcher};

/// What one token request is answered with: the primary tenant's token, and one per
/// auxiliary tenant, in order.
#[derive(Clone)]
pub struct Tokens {
    pub primary: Token,
    pub auxiliary: Vec<Token>,
}
