//! The token cache. Real IMDS hands out the same token for a (machine, identity, resource)
//! until it nears expiry, so `expires_in` counts down between calls; it also keeps token
//! answers cheap, since minting signs with RSA.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::tokens::IssuedToken;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    pub machine: Arc<str>,
    /// The identity's ARM ID key, or `system` for the system-assigned identity.
    pub identity: String,
    pub resource: String,
    pub version: u8,
}

#[derive(Debug, Clone)]
pub struct CachedToken {
    /// Which assignment of the identity the token was minted for (see
    /// [`super::selection::Effective::assignment`]); another assignment means a fresh token.
    pub assignment: String,
    pub lifetime_secs: i64,
    pub token: Arc<IssuedToken>,
}

#[derive(Debug, Default)]
pub struct TokenCache {
    entries: Mutex<HashMap<CacheKey, CachedToken>>,
}

impl TokenCache {
    /// The cached token for `key` if it was minted for this assignment and lifetime and is
    /// still fresh at `now` (Unix seconds).
    pub fn get(
        &self,
        key: &CacheKey,
        assignment: &str,
        lifetime_secs: i64,
        now: i64,
    ) -> Option<Arc<IssuedToken>> {
        let entries = self.lock();
        let cached = entries.get(key)?;
        (cached.assignment == assignment
            && cached.lifetime_secs == lifetime_secs
            && is_fresh(cached.token.expires_on, now, lifetime_secs))
        .then(|| cached.token.clone())
    }

    pub fn put(&self, key: CacheKey, token: CachedToken) {
        self.lock().insert(key, token);
    }

    pub fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<CacheKey, CachedToken>> {
        // Entries are replaced whole, so a poisoned map is still consistent.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A cached token is served while more than five minutes — or half its lifetime, for short
/// lifetimes — remain, so clients never receive a token about to expire.
pub fn is_fresh(expires_on: i64, now: i64, lifetime_secs: i64) -> bool {
    expires_on - now > (lifetime_secs / 2).min(300)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> CacheKey {
        CacheKey {
            machine: Arc::from("vm"),
            identity: "system".into(),
            resource: "r".into(),
            version: 1,
        }
    }

    fn cached(expires_on: i64) -> CachedToken {
        CachedToken {
            assignment: "1@0".into(),
            lifetime_secs: 86_399,
            token: Arc::new(IssuedToken {
                access_token: "t".into(),
                not_before: 0,
                expires_on,
            }),
        }
    }

    #[test]
    fn freshness_leaves_a_margin_before_expiry() {
        assert!(is_fresh(1_000 + 86_399, 1_000, 86_399));
        assert!(is_fresh(1_000 + 301, 1_000, 86_399));
        assert!(!is_fresh(1_000 + 300, 1_000, 86_399));
        assert!(is_fresh(1_000 + 31, 1_000, 60));
        assert!(!is_fresh(1_000 + 30, 1_000, 60));
    }

    #[test]
    fn a_hit_needs_the_same_assignment_and_lifetime() {
        let cache = TokenCache::default();
        cache.put(key(), cached(100_000));
        assert!(cache.get(&key(), "1@0", 86_399, 1_000).is_some());
        assert!(cache.get(&key(), "2@0", 86_399, 1_000).is_none());
        assert!(cache.get(&key(), "1@0", 3_600, 1_000).is_none());
        assert!(cache.get(&key(), "1@0", 86_399, 99_800).is_none());
        cache.clear();
        assert!(cache.get(&key(), "1@0", 86_399, 1_000).is_none());
    }
}
