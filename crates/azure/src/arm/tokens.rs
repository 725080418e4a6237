//! The ARM client's token: fetched once, reused until five minutes before it expires (as
//! upstream's client refreshed), and dropped early when ARM refuses it.

use std::time::{Duration, SystemTime};

use tokio::sync::Mutex;

use crate::credential::{AuthError, Credential, Token};

const REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);

#[derive(Debug)]
pub(crate) struct TokenCache {
    credential: Credential,
    audience: String,
    /// Held across the fetch, so concurrent callers wait for one request instead of each
    /// sending their own.
    cached: Mutex<Option<Token>>,
}

impl TokenCache {
    pub(crate) fn new(credential: Credential, audience: String) -> Self {
        Self {
            credential,
            audience,
            cached: Mutex::new(None),
        }
    }

    pub(crate) async fn token(&self) -> Result<Token, AuthError> {
        let mut cached = self.cached.lock().await;
        if let Some(token) = cached.as_ref()
            && token.is_fresh(SystemTime::now(), REFRESH_MARGIN)
        {
            return Ok(token.clone());
        }
        let token = self.credential.token(&self.audience).await?;
        *cached = Some(token.clone());
        Ok(token)
    }

    /// Forgets `refused` (ARM said it is expired or invalid, whatever its own expiry says),
    /// unless another caller already replaced it.
    pub(crate) async fn forget(&self, refused: &Token) {
        let mut cached = self.cached.lock().await;
        if cached
            .as_ref()
            .is_some_and(|t| t.access_token() == refused.access_token())
        {
            *cached = None;
        }
    }
}
