//! Fault rules: the admin API installs them, each surface's middleware consults them before
//! the real handler runs. A rule matches on surface, method, path and (for IMDS) machine or
//! client ID, fires a number of times (or until removed), and either delays the request, holds
//! it until a test releases it ([`hold`]), or answers it with an error in the surface's own
//! error shape.

pub mod hold;

use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use hold::Holds;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Surface {
    Imds,
    Arm,
    Entra,
}

impl Surface {
    pub fn as_str(self) -> &'static str {
        match self {
            Surface::Imds => "imds",
            Surface::Arm => "arm",
            Surface::Entra => "entra",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultRuleSpec {
    pub surface: Surface,
    #[serde(default)]
    pub method: Option<String>,
    /// A regular expression searched in the request path (case-insensitive).
    #[serde(default)]
    pub path: Option<String>,
    /// IMDS: the machine name (`<vm>` or `<scale set>_<instance>`).
    #[serde(default)]
    pub machine: Option<String>,
    /// IMDS `client_id` query value or Entra `client_id` form value.
    #[serde(default)]
    pub client_id: Option<String>,
    /// How many requests the rule affects; absent means until removed.
    #[serde(default)]
    pub times: Option<u32>,
    pub action: FaultAction,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase", deny_unknown_fields)]
pub enum FaultAction {
    /// Answer with an error in the surface's shape.
    Error(ErrorFault),
    /// Wait (real time, whatever the clock mode) before handling the request normally.
    Delay { ms: u64 },
    /// Hold the request until it is released through the admin API, then handle it normally.
    Hold,
    /// ARM: the next matching long-running operation ends `Failed` with this error.
    LroFailure { code: String, message: String },
}

/// An error a fault rule answers with. `code`/`message` default to the surface's usual wording
/// for `status`; `aadsts` (Entra) selects an AADSTS error; `body` replaces the whole body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ErrorFault {
    pub status: u16,
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub retry_after: Option<u64>,
    #[serde(default)]
    pub aadsts: Option<u32>,
    #[serde(default)]
    pub body: Option<serde_json::Value>,
}

impl ErrorFault {
    /// An error with only a status: every other part takes the surface's default.
    pub fn status(status: u16) -> Self {
        Self {
            status,
            code: None,
            message: None,
            retry_after: None,
            aadsts: None,
            body: None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultRule {
    pub id: u64,
    #[serde(flatten)]
    pub spec: FaultRuleSpec,
    #[serde(skip)]
    path_regex: Option<regex::Regex>,
    pub fired: u64,
}

/// What a request looks like to the fault matcher.
#[derive(Debug, Default)]
pub struct FaultRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub machine: Option<&'a str>,
    pub client_id: Option<&'a str>,
}

#[derive(Debug, thiserror::Error)]
pub enum FaultError {
    #[error("fault rule path {pattern:?} is not a valid regular expression: {source}")]
    BadPath {
        pattern: String,
        source: regex::Error,
    },
    #[error("fault rule action {0:?} does not apply to surface {1}")]
    WrongSurface(&'static str, &'static str),
}

/// A rule that fired for a request: which one, and what it does.
#[derive(Debug, Clone, PartialEq)]
pub struct Fired {
    pub rule: u64,
    pub action: FaultAction,
}

/// The fault rules of one emulator, and the requests their `hold` rules are holding.
#[derive(Debug, Default)]
pub struct FaultBook {
    inner: Mutex<FaultBookInner>,
    holds: Holds,
}

#[derive(Debug, Default)]
struct FaultBookInner {
    next_id: u64,
    rules: Vec<FaultRule>,
}

impl FaultRule {
    fn matches(&self, surface: Surface, req: &FaultRequest<'_>) -> bool {
        let s = &self.spec;
        s.surface == surface
            && s.method
                .as_deref()
                .is_none_or(|m| m.eq_ignore_ascii_case(req.method))
            && self
                .path_regex
                .as_ref()
                .is_none_or(|r| r.is_match(req.path))
            && s.machine
                .as_deref()
                .is_none_or(|m| req.machine.is_some_and(|x| x.eq_ignore_ascii_case(m)))
            && s.client_id
                .as_deref()
                .is_none_or(|c| req.client_id.is_some_and(|x| x.eq_ignore_ascii_case(c)))
    }
}

impl FaultBook {
    pub fn add(&self, spec: FaultRuleSpec) -> Result<FaultRule, FaultError> {
        if matches!(spec.action, FaultAction::LroFailure { .. }) && spec.surface != Surface::Arm {
            return Err(FaultError::WrongSurface(
                "lroFailure",
                spec.surface.as_str(),
            ));
        }
        let path_regex = spec
            .path
            .as_deref()
            .map(|p| {
                regex::RegexBuilder::new(p)
                    .case_insensitive(true)
                    .build()
                    .map_err(|source| FaultError::BadPath {
                        pattern: p.to_string(),
                        source,
                    })
            })
            .transpose()?;
        let mut inner = self.lock();
        inner.next_id += 1;
        let rule = FaultRule {
            id: inner.next_id,
            spec,
            path_regex,
            fired: 0,
        };
        inner.rules.push(rule.clone());
        Ok(rule)
    }

    /// Removes a rule; requests it holds go on. False if there is no such rule (a rule whose
    /// `times` ran out is gone already; what it holds is released through [`Holds`]).
    pub fn remove(&self, id: u64) -> bool {
        let removed = {
            let mut inner = self.lock();
            let before = inner.rules.len();
            inner.rules.retain(|r| r.id != id);
            inner.rules.len() != before
        };
        if removed {
            self.holds.release_where(Some(id));
        }
        removed
    }

    /// Removes every rule; every held request goes on.
    pub fn clear(&self) {
        self.lock().rules.clear();
        self.holds.release_where(None);
    }

    /// Requests held by `hold` rules.
    pub fn holds(&self) -> &Holds {
        &self.holds
    }

    pub fn list(&self) -> Vec<FaultRule> {
        self.lock().rules.clone()
    }

    /// The first rule that matches a request, consuming one of its `times`.
    /// `LroFailure` rules are never returned here; see [`FaultBook::take_lro_failure`].
    pub fn take(&self, surface: Surface, req: &FaultRequest<'_>) -> Option<Fired> {
        self.take_where(surface, req, |a| {
            !matches!(a, FaultAction::LroFailure { .. })
        })
    }

    /// The error an ARM long-running operation started by this request should end with.
    pub fn take_lro_failure(&self, req: &FaultRequest<'_>) -> Option<(String, String)> {
        match self.take_where(Surface::Arm, req, |a| {
            matches!(a, FaultAction::LroFailure { .. })
        }) {
            Some(Fired {
                action: FaultAction::LroFailure { code, message },
                ..
            }) => Some((code, message)),
            _ => None,
        }
    }

    fn take_where(
        &self,
        surface: Surface,
        req: &FaultRequest<'_>,
        kind: impl Fn(&FaultAction) -> bool,
    ) -> Option<Fired> {
        let mut inner = self.lock();
        let index = inner
            .rules
            .iter()
            .position(|r| kind(&r.spec.action) && r.matches(surface, req))?;
        let rule = &mut inner.rules[index];
        rule.fired += 1;
        let fired = Fired {
            rule: rule.id,
            action: rule.spec.action.clone(),
        };
        if let Some(times) = rule.spec.times.as_mut() {
            *times = times.saturating_sub(1);
            if *times == 0 {
                inner.rules.remove(index);
            }
        }
        Some(fired)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FaultBookInner> {
        // A poisoned lock only means another request panicked mid-update; the rules stay usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> FaultRuleSpec {
        serde_json::from_value(json).expect("valid spec")
    }

    #[test]
    fn a_counted_rule_fires_that_many_times_then_disappears() {
        let book = FaultBook::default();
        book.add(spec(serde_json::json!({
            "surface": "imds", "path": "oauth2/TOKEN", "times": 2,
            "action": {"kind": "error", "status": 429, "retryAfter": 3}
        })))
        .expect("added");
        let req = FaultRequest {
            method: "GET",
            path: "/metadata/identity/oauth2/token",
            ..Default::default()
        };
        assert!(book.take(Surface::Imds, &req).is_some());
        assert!(book.take(Surface::Arm, &req).is_none());
        assert!(book.take(Surface::Imds, &req).is_some());
        assert!(book.take(Surface::Imds, &req).is_none());
        assert!(book.list().is_empty());
    }

    #[test]
    fn machine_and_client_filters_must_both_match() {
        let book = FaultBook::default();
        book.add(spec(serde_json::json!({
            "surface": "imds", "machine": "vmss_0", "clientId": "ABC",
            "action": {"kind": "delay", "ms": 5}
        })))
        .expect("added");
        let mut req = FaultRequest {
            method: "GET",
            path: "/",
            machine: Some("vmss_0"),
            client_id: Some("abc"),
        };
        assert_eq!(
            book.take(Surface::Imds, &req).map(|f| f.action),
            Some(FaultAction::Delay { ms: 5 })
        );
        req.machine = Some("vmss_1");
        assert_eq!(book.take(Surface::Imds, &req), None);
    }

    #[test]
    fn lro_failures_are_kept_for_the_operation_and_only_on_arm() {
        let book = FaultBook::default();
        let err = book
            .add(spec(serde_json::json!({"surface": "imds", "action": {"kind": "lroFailure", "code": "X", "message": "m"}})))
            .expect_err("wrong surface");
        assert!(err.to_string().contains("imds"));
        book.add(spec(serde_json::json!({"surface": "arm", "method": "PATCH", "times": 1, "action": {"kind": "lroFailure", "code": "InternalError", "message": "boom"}})))
            .expect("added");
        let req = FaultRequest {
            method: "PATCH",
            path: "/subscriptions/s",
            ..Default::default()
        };
        assert!(book.take(Surface::Arm, &req).is_none());
        assert_eq!(
            book.take_lro_failure(&req),
            Some(("InternalError".into(), "boom".into()))
        );
        assert_eq!(book.take_lro_failure(&req), None);
    }

    #[test]
    fn bad_path_patterns_are_rejected_with_the_pattern_named() {
        let err = FaultBook::default()
            .add(spec(serde_json::json!({"surface": "arm", "path": "(", "action": {"kind": "delay", "ms": 1}})))
            .expect_err("bad regex");
        assert!(err.to_string().contains("\"(\""), "{err}");
    }

    #[test]
    fn a_fired_rule_names_itself() {
        let book = FaultBook::default();
        let rule = book
            .add(spec(
                serde_json::json!({"surface": "entra", "action": {"kind": "hold"}}),
            ))
            .expect("added");
        let req = FaultRequest {
            method: "POST",
            path: "/t/oauth2/v2.0/token",
            ..Default::default()
        };
        assert_eq!(
            book.take(Surface::Entra, &req),
            Some(Fired {
                rule: rule.id,
                action: FaultAction::Hold
            })
        );
    }

    #[tokio::test]
    async fn removing_a_hold_rule_releases_what_it_holds() {
        let book = FaultBook::default();
        let hold = serde_json::json!({"surface": "imds", "action": {"kind": "hold"}});
        let first = book.add(spec(hold.clone())).expect("added").id;
        let second = book.add(spec(hold)).expect("added").id;
        let request = |rule| hold::HoldRequest {
            rule,
            surface: Surface::Imds,
            method: "GET".into(),
            path: "/".into(),
            machine: None,
            client_id: None,
        };
        let a = book.holds().hold(request(first));
        let b = book.holds().hold(request(second));
        assert!(book.remove(first));
        a.released().await;
        assert_eq!(book.holds().list(None).len(), 1);
        book.clear();
        b.released().await;
        assert!(book.holds().list(None).is_empty());
    }
}
