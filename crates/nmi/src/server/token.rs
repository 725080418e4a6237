//! A token request: who calls (by source IP, or named on the host listener), which identity
//! answers (the core's selection, re-run on every request against the current state), then
//! the token from the cache or from IMDS/Entra ID.
//!
//! A cached token is the common answer, so that path copies nothing it can share: the pod
//! and its assignments are read in place, the answer's body is prepared once per token, and a
//! served token is logged at debug only (a line per request cost a third of an answer).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use podid_api::names::POD_LABEL_KEY;
use tokio::time::sleep_until;

use super::App;
use super::answer::{self, Answer};
use crate::metrics::{KubeOperation, RequestLabels};
use crate::pods::{POD_LOOKUP_ATTEMPTS, POD_LOOKUP_INTERVAL, PodFacts, exception_for};
use crate::reply::ErrorReply;
use crate::request::{PodName, TokenQuery};
use crate::selection::{
    Decision, Selected, SelectionError, StandardInputs, TokenSource, pass_through, select_managed,
    select_standard,
};
use crate::state::Mode;
use crate::tokens::{CacheKey, Lookup};

/// `/metadata/identity/oauth2/token` from the pod holding `source`.
pub async fn pod_token(app: &App, source: IpAddr, query: TokenQuery, path: &str) -> Answer {
    let started = Instant::now();
    let (namespace, answer) = match find_pod_by_ip(app, source).await {
        Err(reply) => (String::new(), answer::error(&reply)),
        Ok(pod) => {
            let answer = match choose_source(app, &pod, &query, true).await {
                Ok(source) => token(app, &pod, &source, &query, false).await,
                Err(reply) => answer::error(&reply),
            };
            (pod.namespace.clone(), answer)
        }
    };
    record(app, path, query, started, namespace, answer)
}

/// `/host/token` on behalf of a pod named in the headers: no exceptions, no Retry-After
/// (upstream's host rules).
pub async fn host_token(app: &App, pod: PodName, query: TokenQuery, path: &str) -> Answer {
    let started = Instant::now();
    let answer = match app.state.pod_by_name(&pod.namespace, &pod.name) {
        Err(error) => answer::error(&error.reply()),
        Ok(facts) => match choose_source(app, &facts, &query, false).await {
            Ok(source) => token(app, &facts, &source, &query, true).await,
            Err(reply) => answer::error(&reply),
        },
    };
    record(app, path, query, started, pod.namespace, answer)
}

fn record(
    app: &App,
    path: &str,
    query: TokenQuery,
    started: Instant,
    namespace: String,
    answer: Answer,
) -> Answer {
    app.metrics.request(
        RequestLabels {
            operation_type: path.to_owned(),
            status_code: answer.status().as_str().to_owned(),
            namespace,
            resource: query.resource,
        },
        started.elapsed(),
    );
    answer
}

/// The one pod holding `source`, looking again while the pod watch may lag behind a pod that
/// just started (woken early by any change).
async fn find_pod_by_ip(app: &App, source: IpAddr) -> Result<Arc<PodFacts>, ErrorReply> {
    let mut changes = app.state.changes();
    let mut attempt = 1;
    loop {
        match app.state.pod_by_ip(source) {
            Ok(pod) => return Ok(pod),
            Err(error) => {
                app.metrics.kube_failed(KubeOperation::GetPodList);
                if !error.is_worth_retrying() || attempt >= POD_LOOKUP_ATTEMPTS {
                    tracing::info!(%source, %error, "no caller pod");
                    return Err(error.reply());
                }
            }
        }
        attempt += 1;
        let _ = tokio::time::timeout(POD_LOOKUP_INTERVAL, changes.changed()).await;
    }
}

/// Where the pod's token comes from: an exception's pass-through (pods' listener only), else
/// the mode's selection.
async fn choose_source(
    app: &App,
    pod: &PodFacts,
    query: &TokenQuery,
    exceptions_apply: bool,
) -> Result<TokenSource, ErrorReply> {
    if exceptions_apply {
        let exceptions = app.state.exceptions_in(&pod.namespace);
        if let Some(why) = exception_for(pod, &exceptions, &app.settings.mic_namespace) {
            tracing::info!(pod = %pod.key(), ?why, "excepted pod: passing the request to IMDS");
            return Ok(pass_through(&query.identity));
        }
    }
    let retry_after = exceptions_apply && app.settings.set_retry_after_header;
    let selected = match app.state.mode() {
        Mode::Standard => select_waiting(app, pod, query).await,
        Mode::Managed => select_managed(
            pod,
            &query.identity,
            &app.state.bindings_in(&pod.namespace),
            &app.state.identities_in(&pod.namespace),
        ),
    };
    match selected {
        Ok(selected) => {
            tracing::debug!(pod = %pod.key(), identity = %selected.identity, "identity selected");
            Ok(selected.source)
        }
        Err(error) => {
            tracing::info!(pod = %pod.key(), %error, "no identity");
            Err(error.reply(retry_after))
        }
    }
}

/// Standard mode: the core's looks, the next one at each interval or as soon as the watched
/// state changes (an AzureAssignedIdentity turning `Assigned` answers at once). The number of
/// intervals, hence the longest wait, is upstream's. Dropping the future (the client went
/// away) ends the wait; `nmi_requests_waiting_for_assignment` counts the requests in it.
async fn select_waiting(
    app: &App,
    pod: &PodFacts,
    query: &TokenQuery,
) -> Result<Selected, SelectionError> {
    let mut changes = app.state.changes();
    let interval = app.settings.retry.interval;
    let label = pod.labels.get(POD_LABEL_KEY).map_or("", String::as_str);
    let mut attempt = 0;
    let mut next_look = tokio::time::Instant::now() + interval;
    let mut waiting = None;
    loop {
        let selecting_bindings = app.state.bindings_selecting(label);
        let decision = app
            .state
            .with_assigned(&pod.namespace, &pod.name, |assigned| {
                let inputs = StandardInputs {
                    node: app.state.node(),
                    pod_namespace: &pod.namespace,
                    pod_name: &pod.name,
                    assigned,
                    force_namespaced: app.settings.force_namespaced,
                    selecting_bindings: &selecting_bindings,
                };
                select_standard(&inputs, &query.identity, app.settings.retry, attempt)
            });
        match decision {
            Decision::Serve(selected) => return Ok(selected),
            Decision::Fail(error) => return Err(error),
            Decision::Wait(_) => {
                waiting.get_or_insert_with(|| app.metrics.waiting());
                tokio::select! {
                    changed = changes.changed() => {
                        // The state's sender lives as long as the agent; without it only the
                        // interval is left.
                        if changed.is_err() {
                            sleep_until(next_look).await;
                            attempt += 1;
                            next_look += interval;
                        }
                    }
                    () = sleep_until(next_look) => {
                        attempt += 1;
                        next_look += interval;
                    }
                }
            }
        }
    }
}

/// The token for `source` from the cache, else fetched, as the pods' or the host's answer.
async fn token(
    app: &App,
    pod: &PodFacts,
    source: &TokenSource,
    query: &TokenQuery,
    host: bool,
) -> Answer {
    let key = CacheKey::new(source, &query.resource);
    // Boxed: the fetch's state is large and rarely needed, and this future is kept per
    // connection while the request lasts.
    let fetched = app
        .cache
        .get_or_fetch(key, || Box::pin(app.fetcher.fetch(source, &query.resource)))
        .await;
    match fetched {
        Ok((tokens, lookup)) => {
            match lookup {
                Lookup::Hit => app.metrics.cache_hit(),
                Lookup::Miss => app.metrics.cache_miss(),
            }
            tracing::debug!(pod = %pod.key(), resource = %query.resource, ?lookup, "token served");
            let now = app.clock.now();
            let body = if host {
                tokens.answer().host_body(now)
            } else {
                tokens.answer().token_body(now)
            };
            answer::json(200, body)
        }
        Err(error) => answer::error(&error.reply()),
    }
}
