//! Getting tokens for a [`TokenSource`](crate::TokenSource): from IMDS or Entra ID
//! ([`fetch`]), with the credential read from its Secret ([`secret`]), through a cache that
//! makes one upstream call per key at a time ([`cache`]).

pub mod cache;
pub mod clock;
pub mod fetch;
pub mod secret;

use std::time::{Duration, SystemTime};

use podid_azure::credential::Token;

use crate::response::PreparedBody;

pub use cache::{CacheKey, Lookup, TokenCache};
pub use clock::{Clock, SystemClock};
pub use fetch::{FetchError, Fetcher};

/// What one token request is answered with: the primary tenant's token, and one per auxiliary
/// tenant, in order, kept as their answers (tokens are cached under their resource and source,
/// so every request they answer has the same body but for the time). The tokens themselves are
/// not kept: the prepared answers hold their only copy.
pub struct Tokens {
    answer: PreparedBody,
    /// The earliest expiry among the tokens.
    expires_on: SystemTime,
}

impl Tokens {
    /// `resource` and `client_id` are what the answers echo when a token lacks them.
    pub fn new(
        primary: &Token,
        auxiliary: &[Token],
        resource: &str,
        client_id: Option<&str>,
    ) -> Self {
        let expires_on = auxiliary
            .iter()
            .map(Token::expires_on)
            .fold(primary.expires_on(), SystemTime::min);
        Self {
            answer: PreparedBody::new(primary, auxiliary, resource, client_id),
            expires_on,
        }
    }

    pub fn answer(&self) -> &PreparedBody {
        &self.answer
    }

    /// Whether every token is still good for `margin` after `now` ([`Token::is_fresh`]).
    pub fn is_fresh(&self, now: SystemTime, margin: Duration) -> bool {
        now + margin < self.expires_on
    }
}
