//! The admin API: knobs, fault rules and held requests, the clock, counters, the journal, the
//! world snapshot and reset.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::{ClockMode, Emulator, HeldRequest, Reply, Surface};

/// How long [`Emulator::wait_held`] lets the emulator wait before failing the test. Only a bound
/// for a broken test: the wait ends as soon as the requests are held.
const HOLD_WAIT_SECS: u64 = 60;

impl Emulator {
    /// `http://<admin><path>`.
    pub fn admin_url(&self, path: &str) -> String {
        format!("{}{path}", self.admin_base())
    }

    /// One admin API request; `body` is sent as JSON.
    pub async fn admin(&self, method: Method, path: &str, body: Option<&Value>) -> Reply {
        let mut request = self.http().request(method, self.admin_url(path));
        if let Some(body) = body {
            request = request.json(body);
        }
        self.send(request).await
    }

    /// `GET` of an admin path that must answer 200 with JSON; returns the JSON.
    pub async fn admin_get(&self, path: &str) -> Value {
        let r = self.admin(Method::GET, path, None).await;
        assert_eq!(r.status, StatusCode::OK, "admin {path}: {}", r.body);
        r.json()
    }

    /// `PATCH /admin/knobs` with a JSON merge patch; panics unless accepted.
    pub async fn set_knobs(&self, patch: Value) {
        let r = self
            .admin(Method::PATCH, "/admin/knobs", Some(&patch))
            .await;
        assert_eq!(r.status, StatusCode::OK, "knobs refused: {}", r.body);
    }

    /// Installs a fault rule (docs/emulator.md, "Fault rules"); returns its ID. Panics unless
    /// accepted.
    pub async fn add_fault(&self, rule: Value) -> u64 {
        let r = self.admin(Method::POST, "/admin/faults", Some(&rule)).await;
        assert_eq!(r.status, StatusCode::CREATED, "fault refused: {}", r.body);
        r.body["id"].as_u64().expect("the rule's id")
    }

    /// Installs a `hold` rule with these filters (`{"surface": "imds", "path": "oauth2/token",
    /// "times": 2}`); returns its ID. Matching requests wait until released.
    pub async fn hold(&self, filters: Value) -> u64 {
        let mut rule = filters;
        let fields = rule.as_object_mut().expect("the filters are a JSON object");
        fields.insert("action".into(), json!({"kind": "hold"}));
        self.add_fault(rule).await
    }

    /// The requests held now, oldest first.
    pub async fn held(&self) -> Vec<HeldRequest> {
        held_list(self.admin_get("/admin/held").await)
    }

    /// Waits until at least `count` requests are held and returns them; the emulator notifies
    /// the wait, nothing polls. Panics if they are not held within a minute.
    pub async fn wait_held(&self, count: usize) -> Vec<HeldRequest> {
        let path = format!("/admin/held?atLeast={count}&waitSeconds={HOLD_WAIT_SECS}");
        held_list(self.admin_get(&path).await)
    }

    /// Lets one held request go on. Panics unless it was held.
    pub async fn release(&self, id: u64) {
        let path = format!("/admin/held/{id}/release");
        let r = self.admin(Method::POST, &path, None).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "release {id}: {}", r.body);
    }

    /// Lets every held request go on; returns how many there were.
    pub async fn release_all(&self) -> u64 {
        let r = self.admin(Method::POST, "/admin/held/release", None).await;
        assert_eq!(r.status, StatusCode::OK, "release: {}", r.body);
        r.body["released"].as_u64().expect("a count")
    }

    /// Moves the emulator's clock forward by whole seconds.
    pub async fn advance_clock(&self, seconds: u64) {
        self.change_clock(json!({ "advanceSeconds": seconds }))
            .await;
    }

    /// Moves the emulator's clock forward by milliseconds (for the `…Ms` knobs).
    pub async fn advance_clock_ms(&self, ms: u64) {
        self.change_clock(json!({ "advanceMs": ms })).await;
    }

    /// Switches the clock's mode; time continues from the current reading.
    pub async fn set_clock_mode(&self, mode: ClockMode) {
        self.change_clock(json!({ "mode": mode })).await;
    }

    async fn change_clock(&self, change: Value) {
        let r = self
            .admin(Method::POST, "/admin/clock", Some(&change))
            .await;
        assert_eq!(r.status, StatusCode::OK, "clock refused: {}", r.body);
    }

    /// `GET /admin/world`: machines with their identities, identities, role assignments, `nowMs`.
    pub async fn world(&self) -> Value {
        self.admin_get("/admin/world").await
    }

    /// `(total, count for status)` of one operation in `/admin/counters` (`imds.token`, …).
    pub async fn counter(&self, operation: &str, status: u16) -> (u64, u64) {
        let counters = self.admin_get("/admin/counters").await;
        let op = &counters[operation];
        (
            op["total"].as_u64().unwrap_or(0),
            op["byStatus"][status.to_string()].as_u64().unwrap_or(0),
        )
    }

    /// The journal, oldest first, of one surface or all.
    pub async fn journal(&self, surface: Option<Surface>) -> Vec<Value> {
        let path = match surface {
            Some(surface) => format!("/admin/journal?surface={}", surface.as_str()),
            None => "/admin/journal".to_string(),
        };
        match self.admin_get(&path).await {
            Value::Array(entries) => entries,
            other => panic!("the journal is not a list: {other}"),
        }
    }

    /// `POST /admin/reset`: back to the world as loaded (state, knobs, clock, faults, held
    /// requests, journal, caches).
    pub async fn reset(&self) {
        let r = self.admin(Method::POST, "/admin/reset", None).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "reset: {}", r.body);
    }
}

fn held_list(body: Value) -> Vec<HeldRequest> {
    serde_json::from_value(body).expect("a list of held requests")
}
