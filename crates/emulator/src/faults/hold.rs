//! Requests held by `hold` fault rules until a test releases them. Each held request waits on
//! its own one-shot channel; a watch channel announces every change, so a test can wait for
//! "N requests held" without polling or sleeping.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, watch};

use super::Surface;

/// A request a `hold` rule is holding, as the admin API lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeldRequest {
    /// Names this request in `POST /admin/held/{id}/release`.
    pub id: u64,
    /// The fault rule holding it.
    pub rule: u64,
    pub surface: Surface,
    pub method: String,
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

/// What a request looks like when it is held (the registry assigns the ID).
#[derive(Debug, Clone)]
pub struct HoldRequest {
    pub rule: u64,
    pub surface: Surface,
    pub method: String,
    pub path: String,
    pub machine: Option<String>,
    pub client_id: Option<String>,
}

#[derive(Debug)]
pub struct Holds {
    inner: Mutex<HoldsInner>,
    /// Bumped on every change; waiters re-check their condition when it moves.
    changes: watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct HoldsInner {
    next_id: u64,
    held: BTreeMap<u64, Held>,
}

#[derive(Debug)]
struct Held {
    request: HeldRequest,
    release: oneshot::Sender<()>,
}

impl Default for Holds {
    fn default() -> Self {
        Self {
            inner: Mutex::default(),
            changes: watch::Sender::new(0),
        }
    }
}

/// One held request: [`Ticket::released`] waits until it is let go. Dropping the ticket (the
/// client went away) forgets the request.
#[must_use = "a ticket holds nothing unless awaited"]
pub struct Ticket<'a> {
    holds: &'a Holds,
    id: u64,
    release: oneshot::Receiver<()>,
}

impl Ticket<'_> {
    /// Waits until the request is released (or its rule removed, or the emulator reset).
    pub async fn released(mut self) {
        // A dropped sender means the registry let go of it: that is a release too.
        let _ = (&mut self.release).await;
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        self.holds.forget(self.id);
    }
}

impl Holds {
    /// Registers a held request.
    pub fn hold(&self, request: HoldRequest) -> Ticket<'_> {
        let (tx, rx) = oneshot::channel();
        let id = {
            let mut inner = self.lock();
            inner.next_id += 1;
            let id = inner.next_id;
            let held = HeldRequest {
                id,
                rule: request.rule,
                surface: request.surface,
                method: request.method,
                path: request.path,
                machine: request.machine,
                client_id: request.client_id,
            };
            inner.held.insert(
                id,
                Held {
                    request: held,
                    release: tx,
                },
            );
            id
        };
        self.announce();
        Ticket {
            holds: self,
            id,
            release: rx,
        }
    }

    /// Requests held now, oldest first, optionally only those of one rule.
    pub fn list(&self, rule: Option<u64>) -> Vec<HeldRequest> {
        self.lock()
            .held
            .values()
            .filter(|h| rule.is_none_or(|r| h.request.rule == r))
            .map(|h| h.request.clone())
            .collect()
    }

    /// Lets one request go on; false if no request with that ID is held.
    pub fn release(&self, id: u64) -> bool {
        let held = self.lock().held.remove(&id);
        let found = held.is_some();
        if let Some(held) = held {
            // The receiver may be gone already (client disconnected): nothing to wake.
            let _ = held.release.send(());
            self.announce();
        }
        found
    }

    /// Lets every held request (of one rule, if given) go on; returns how many.
    pub fn release_where(&self, rule: Option<u64>) -> usize {
        let released: Vec<Held> = {
            let mut inner = self.lock();
            let ids: Vec<u64> = inner
                .held
                .values()
                .filter(|h| rule.is_none_or(|r| h.request.rule == r))
                .map(|h| h.request.id)
                .collect();
            ids.iter().filter_map(|id| inner.held.remove(id)).collect()
        };
        let count = released.len();
        for held in released {
            let _ = held.release.send(());
        }
        if count > 0 {
            self.announce();
        }
        count
    }

    /// Waits until at least `count` requests (of one rule, if given) are held, for at most
    /// `timeout`: `Ok` with them, or `Err` with those held when the time ran out.
    pub async fn wait_for(
        &self,
        count: usize,
        rule: Option<u64>,
        timeout: Duration,
    ) -> Result<Vec<HeldRequest>, Vec<HeldRequest>> {
        // Subscribing before the first check means no change between check and wait is missed.
        let mut changes = self.changes.subscribe();
        let reached = async {
            loop {
                let held = self.list(rule);
                if held.len() >= count {
                    return held;
                }
                if changes.changed().await.is_err() {
                    // The registry is going away; report what there is.
                    return held;
                }
            }
        };
        match tokio::time::timeout(timeout, reached).await {
            Ok(held) if held.len() >= count => Ok(held),
            Ok(held) => Err(held),
            Err(_) => Err(self.list(rule)),
        }
    }

    fn forget(&self, id: u64) {
        if self.lock().held.remove(&id).is_some() {
            self.announce();
        }
    }

    fn announce(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HoldsInner> {
        // Entries are inserted and removed whole; a panic elsewhere cannot leave one half-made.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(rule: u64, path: &str) -> HoldRequest {
        HoldRequest {
            rule,
            surface: Surface::Imds,
            method: "GET".into(),
            path: path.into(),
            machine: Some("vm".into()),
            client_id: None,
        }
    }

    fn ids(list: &[HeldRequest]) -> Vec<u64> {
        list.iter().map(|h| h.id).collect()
    }

    #[tokio::test]
    async fn a_held_request_goes_on_only_when_released() {
        let holds = Holds::default();
        let ticket = holds.hold(request(7, "/a"));
        let held = holds.list(None);
        assert_eq!(ids(&held), [1]);
        assert_eq!(held[0].rule, 7);
        let mut waiting = pinned(ticket.released());
        assert!(futures::poll!(&mut waiting).is_pending());
        assert!(holds.release(1));
        assert!(futures::poll!(&mut waiting).is_ready());
        assert!(holds.list(None).is_empty());
        assert!(!holds.release(1), "already released");
    }

    #[tokio::test]
    async fn releasing_by_rule_lets_only_that_rules_requests_go() {
        let holds = Holds::default();
        let a = holds.hold(request(1, "/a"));
        let b = holds.hold(request(2, "/b"));
        let c = holds.hold(request(1, "/c"));
        assert_eq!(ids(&holds.list(Some(1))), [1, 3]);
        assert_eq!(holds.release_where(Some(1)), 2);
        a.released().await;
        c.released().await;
        assert_eq!(ids(&holds.list(None)), [2]);
        assert_eq!(holds.release_where(None), 1);
        b.released().await;
        assert_eq!(holds.release_where(None), 0);
    }

    #[tokio::test]
    async fn a_dropped_ticket_is_forgotten() {
        let holds = Holds::default();
        drop(holds.hold(request(1, "/a")));
        assert!(holds.list(None).is_empty());
    }

    #[tokio::test]
    async fn waiting_returns_once_enough_requests_are_held() {
        let holds = Holds::default();
        let first = holds.hold(request(1, "/a"));
        let mut waiting = pinned(holds.wait_for(2, Some(1), Duration::from_secs(60)));
        assert!(futures::poll!(&mut waiting).is_pending());
        // A request of another rule does not count.
        let other = holds.hold(request(2, "/x"));
        assert!(futures::poll!(&mut waiting).is_pending());
        let second = holds.hold(request(1, "/b"));
        match futures::poll!(&mut waiting) {
            std::task::Poll::Ready(Ok(held)) => assert_eq!(ids(&held), [1, 3]),
            other => panic!("expected two held requests, got {other:?}"),
        }
        drop((first, other, second));
    }

    #[tokio::test]
    async fn waiting_gives_up_after_the_timeout_with_what_is_held() {
        let holds = Holds::default();
        let _ticket = holds.hold(request(1, "/a"));
        // A zero timeout checks once and gives up at once.
        let result = holds.wait_for(2, None, Duration::ZERO).await;
        assert_eq!(result.map_err(|held| ids(&held)), Err(vec![1]));
    }

    /// Pins a future so the test can poll it step by step.
    fn pinned<F: Future>(f: F) -> std::pin::Pin<Box<F>> {
        Box::pin(f)
    }
}
