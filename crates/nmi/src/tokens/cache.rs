//! Tokens by (source, resource), refreshed ahead of expiry, with one upstream call per key at a
//! time: concurrent requests for a token being fetched wait for that fetch instead of starting
//! their own (IMDS allows 5 concurrent requests and 20 per second per machine).
//!
//! The cache only answers "which token for this source"; whether the pod may use the source is
//! decided on every request before the cache is asked.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use podid_azure::credential::IdentitySelector;

use super::Tokens;
use super::clock::Clock;
use crate::selection::{ServicePrincipal, TokenSource};

/// A cached token is refreshed once it has less than this left. Larger than the 5 minutes
/// after which Azure SDKs ask again, so a client never gets a token it deems stale.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(10 * 60);

/// What a token is cached under: where it comes from and its audience. Two identities with
/// the same coordinates share tokens; IMDS with the same selector is one source whether the
/// pod was matched or excepted.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    source: String,
    resource: String,
}

impl CacheKey {
    pub fn new(source: &TokenSource, resource: &str) -> Self {
        let source = match source {
            TokenSource::Imds { selector } | TokenSource::PassThrough { selector } => {
                match selector {
                    IdentitySelector::Default => "imds".to_owned(),
                    IdentitySelector::ClientId(id) => format!("imds client_id={id}"),
                    IdentitySelector::ObjectId(id) => format!("imds object_id={id}"),
                    IdentitySelector::ResourceId(id) => format!("imds mi_res_id={id}"),
                }
            }
            TokenSource::ClientSecret(sp) => service_principal("secret", sp),
            TokenSource::ClientCertificate(sp) => service_principal("certificate", sp),
        };
        Self {
            source,
            resource: resource.to_owned(),
        }
    }
}

fn service_principal(kind: &str, sp: &ServicePrincipal) -> String {
    format!(
        "{kind} tenant={} client={} secret={}/{} authority={} auxiliary={}",
        sp.tenant_id,
        sp.client_id,
        sp.secret.namespace,
        sp.secret.name,
        sp.ad_endpoint.as_deref().unwrap_or_default(),
        sp.auxiliary_tenant_ids.join(",")
    )
}

/// Whether the answer came from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    Hit,
    Miss,
}

/// One key's tokens. A hit only reads `cached` (no waiting, no task switch); a miss takes
/// `fetching` first, so requests for a key being fetched wait for that one fetch.
#[derive(Default)]
struct Slot {
    cached: RwLock<Option<Arc<Tokens>>>,
    fetching: tokio::sync::Mutex<()>,
}

pub struct TokenCache {
    slots: Mutex<Slots>,
    clock: Arc<dyn Clock>,
    margin: Duration,
}

#[derive(Default)]
struct Slots {
    by_key: HashMap<CacheKey, Arc<Slot>>,
    /// The next sweep for stale slots comes when this many are held: twice as many as the last
    /// sweep left, so sweeping costs O(1) per new key (a sweep per new key made every cache
    /// miss O(keys)).
    sweep_at: usize,
}

impl TokenCache {
    pub fn new(clock: Arc<dyn Clock>, margin: Duration) -> Self {
        Self {
            slots: Mutex::new(Slots::default()),
            clock,
            margin,
        }
    }

    /// The cached tokens for `key` while fresh, else the result of `fetch` (kept when it
    /// succeeds). While one caller fetches, others asking for the same key wait for it.
    /// A failure is not cached: the next request tries again.
    pub async fn get_or_fetch<F, Fut, E>(
        &self,
        key: CacheKey,
        fetch: F,
    ) -> Result<(Arc<Tokens>, Lookup), E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Tokens, E>>,
    {
        let slot = self.slot(key);
        if let Some(tokens) = self.fresh(&slot) {
            return Ok((tokens, Lookup::Hit));
        }
        let _fetching = slot.fetching.lock().await;
        // Another request may have fetched while this one waited for its turn.
        if let Some(tokens) = self.fresh(&slot) {
            return Ok((tokens, Lookup::Hit));
        }
        let tokens = Arc::new(fetch().await?);
        *slot.cached.write().unwrap_or_else(|p| p.into_inner()) = Some(tokens.clone());
        Ok((tokens, Lookup::Miss))
    }

    fn fresh(&self, slot: &Slot) -> Option<Arc<Tokens>> {
        slot.cached
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .filter(|tokens| self.is_fresh(tokens))
            .cloned()
    }

    fn is_fresh(&self, tokens: &Tokens) -> bool {
        tokens.is_fresh(self.clock.now(), self.margin)
    }

    /// The slot of `key`. Adding a key may first drop the slots that hold nothing fresh and
    /// that no request is using (see [`Slots::sweep_at`]), so the cache holds at most twice
    /// the tokens still worth serving.
    fn slot(&self, key: CacheKey) -> Arc<Slot> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = slots.by_key.get(&key) {
            return slot.clone();
        }
        if slots.by_key.len() >= slots.sweep_at {
            // A slot a request holds (it is fetching or about to) is in use: the map's is the
            // only other reference.
            slots
                .by_key
                .retain(|_, slot| Arc::strong_count(slot) > 1 || self.fresh(slot).is_some());
            slots.sweep_at = 2 * slots.by_key.len();
        }
        slots.by_key.entry(key).or_default().clone()
    }

    /// How many keys the cache holds.
    pub fn len(&self) -> usize {
        self.slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .by_key
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
    use std::time::{SystemTime, UNIX_EPOCH};

    use podid_azure::credential::{Token, TokenFields};
    use serde_json::json;

    use super::*;

    struct TestClock(AtomicU64);

    impl Clock for TestClock {
        fn now(&self) -> SystemTime {
            UNIX_EPOCH + Duration::from_secs(self.0.load(Ordering::SeqCst))
        }
    }

    fn tokens(expires_on: u64) -> Tokens {
        let fields: TokenFields = serde_json::from_value(
            json!({"access_token": "t", "expires_on": expires_on.to_string()}),
        )
        .unwrap();
        Tokens::new(
            &Token::from_fields(fields, UNIX_EPOCH).unwrap(),
            &[],
            "r",
            None,
        )
    }

    fn key(resource: &str) -> CacheKey {
        CacheKey::new(
            &TokenSource::Imds {
                selector: IdentitySelector::ClientId("c".into()),
            },
            resource,
        )
    }

    #[tokio::test]
    async fn a_fresh_token_is_reused_and_refreshed_before_it_expires() {
        let clock = Arc::new(TestClock(AtomicU64::new(1_000)));
        let cache = TokenCache::new(clock.clone(), Duration::from_secs(600));
        let fetches = AtomicU32::new(0);
        let fetch = || async {
            fetches.fetch_add(1, Ordering::SeqCst);
            Ok::<_, ()>(tokens(5_000))
        };
        assert_eq!(
            cache.get_or_fetch(key("r"), fetch).await.unwrap().1,
            Lookup::Miss
        );
        assert_eq!(
            cache.get_or_fetch(key("r"), fetch).await.unwrap().1,
            Lookup::Hit
        );
        // Another audience is another token.
        assert_eq!(
            cache.get_or_fetch(key("r/"), fetch).await.unwrap().1,
            Lookup::Miss
        );
        // 600 s before expiry the token is no longer served.
        clock.0.store(4_400, Ordering::SeqCst);
        assert_eq!(
            cache.get_or_fetch(key("r"), fetch).await.unwrap().1,
            Lookup::Miss
        );
        assert_eq!(fetches.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn failures_are_not_cached() {
        let cache = TokenCache::new(Arc::new(TestClock(AtomicU64::new(0))), REFRESH_MARGIN);
        let failed = cache
            .get_or_fetch(key("r"), || async { Err::<Tokens, _>("down") })
            .await;
        assert_eq!(failed.err(), Some("down"));
        let (_, lookup) = cache
            .get_or_fetch(key("r"), || async { Ok::<_, ()>(tokens(100_000)) })
            .await
            .unwrap();
        assert_eq!(lookup, Lookup::Miss);
    }

    #[tokio::test]
    async fn concurrent_misses_share_one_fetch() {
        let cache = Arc::new(TokenCache::new(
            Arc::new(TestClock(AtomicU64::new(0))),
            REFRESH_MARGIN,
        ));
        let fetches = Arc::new(AtomicU32::new(0));
        let (release, released) = tokio::sync::watch::channel(false);
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let cache = cache.clone();
            let fetches = fetches.clone();
            let mut released = released.clone();
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_fetch(key("r"), || async move {
                        fetches.fetch_add(1, Ordering::SeqCst);
                        released.wait_for(|go| *go).await.unwrap();
                        Ok::<_, ()>(tokens(100_000))
                    })
                    .await
                    .unwrap()
                    .1
            }));
        }
        tokio::task::yield_now().await;
        release.send(true).unwrap();
        let mut lookups = Vec::new();
        for task in tasks {
            lookups.push(task.await.unwrap());
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        assert_eq!(lookups.iter().filter(|l| **l == Lookup::Miss).count(), 1);
    }

    #[tokio::test]
    async fn stale_unused_slots_are_dropped_when_keys_are_added() {
        let clock = Arc::new(TestClock(AtomicU64::new(0)));
        let cache = TokenCache::new(clock.clone(), Duration::ZERO);
        let ok = |expiry| move || async move { Ok::<_, ()>(tokens(expiry)) };
        cache.get_or_fetch(key("a"), ok(10)).await.unwrap();
        cache.get_or_fetch(key("b"), ok(1_000)).await.unwrap();
        clock.0.store(100, Ordering::SeqCst);
        cache.get_or_fetch(key("c"), ok(1_000)).await.unwrap();
        assert_eq!(cache.len(), 2);
    }
}
