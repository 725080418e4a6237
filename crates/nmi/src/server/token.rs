//! A token request: who calls (by source IP, or named on the host listener), which identity
//! answers (the core's selection, re-run on every request against the current state), then
//! the token from the cache or from IMDS/Entra ID.

use std::net::IpAddr;
use std::time::Instant;

use axum::response::Response;
use podid_api::names::POD_LABEL_KEY;
use tokio::time::sleep_until;

use super::{App, answer};
use crate::metrics::{KubeOperation, RequestLabels};
use crate::pods::{POD_LOOKUP_ATTEMPTS, POD_LOOKUP_INTERVAL, PodFacts, exception_for};
use crate::reply::ErrorReply;
use crate::request::{PodName, TokenQuery};
use crate::response::{TokenContext, host_token_body, token_body};
use crate::selection::{
    Decision, Selected, StandardInputs, TokenSource, pass_through, select_managed, select_standard,
};
use crate::state::Mode;
use crate::tokens::{CacheKey, Lookup, Tokens};

/// Who is asking and for what, once known.
struct Served {
    namespace: String,
    response: Response,
}

/// `/metadata/identity/oauth2/token` from the pod holding `source`.
pub async fn pod_token(app: &App, source: IpAddr, query: TokenQuery, path: &str) -> Response {
    let started = Instant::now();
    let served = match find_pod_by_ip(app, source).await {
        Err(reply) => Served {
            namespace: String::new(),
            response: answer::error(&reply),
        },
        Ok(pod) => {
            let response = match choose_source(app, &pod, &query, true).await {
                Ok(source) => token(app, &pod, &source, &query, false).await,
                Err(reply) => answer::error(&reply),
            };
            Served {
                namespace: pod.namespace,
                response,
            }
        }
    };
    record(app, path, &query, started, served)
}

/// `/host/token` on behalf of a pod named in the headers: no exceptions, no Retry-After
/// (upstream's host rules).
pub async fn host_token(app: &App, pod: PodName, query: TokenQuery, path: &str) -> Response {
    let started = Instant::now();
    let response = match app.state.pod_by_name(&pod.namespace, &pod.name) {
        Err(error) => answer::error(&error.reply()),
        Ok(facts) => match choose_source(app, &facts, &query, false).await {
            Ok(source) => token(app, &facts, &source, &query, true).await,
            Err(reply) => answer::error(&reply),
        },
    };
    let served = Served {
        namespace: pod.namespace,
        response,
    };
    record(app, path, &query, started, served)
}

fn record(app: &App, path: &str, query: &TokenQuery, started: Instant, served: Served) -> Response {
    app.metrics.request(
        RequestLabels {
            operation_type: path.to_owned(),
            status_code: served.response.status().as_u16().to_string(),
            namespace: served.namespace,
            resource: query.resource.clone(),
        },
        started.elapsed(),
    );
    served.response
}

/// The one pod holding `source`, looking again while the pod watch may lag behind a pod that
/// just started (woken early by any change).
async fn find_pod_by_ip(app: &App, source: IpAddr) -> Result<PodFacts, ErrorReply> {
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
            // Debug: "token served" is the one info line per request (each line is a write
            // to stderr, a third of a cached answer's cost when two were written).
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
/// away) ends the wait.
async fn select_waiting(
    app: &App,
    pod: &PodFacts,
    query: &TokenQuery,
) -> Result<Selected, crate::selection::SelectionError> {
    let mut changes = app.state.changes();
    let interval = app.settings.retry.interval;
    let mut attempt = 0;
    let mut next_look = tokio::time::Instant::now() + interval;
    loop {
        let assigned = app.state.assigned_to(&pod.namespace, &pod.name);
        let inputs = StandardInputs {
            node: app.state.node(),
            pod_namespace: &pod.namespace,
            pod_name: &pod.name,
            assigned: &assigned,
            force_namespaced: app.settings.force_namespaced,
            selected_by_binding: app
                .state
                .is_selected(pod.labels.get(POD_LABEL_KEY).map_or("", String::as_str)),
        };
        match select_standard(&inputs, &query.identity, app.settings.retry, attempt) {
            Decision::Serve(selected) => return Ok(selected),
            Decision::Fail(error) => return Err(error),
            Decision::Wait(_) => {
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
) -> Response {
    let key = CacheKey::new(source, &query.resource);
    let fetched = app
        .cache
        .get_or_fetch(key, || app.fetcher.fetch(source, &query.resource))
        .await;
    match fetched {
        Ok((tokens, lookup)) => {
            match lookup {
                Lookup::Hit => app.metrics.cache_hit(),
                Lookup::Miss => app.metrics.cache_miss(),
            }
            tracing::info!(pod = %pod.key(), resource = %query.resource, ?lookup, "token served");
            answer::json(200, body(app, &tokens, source, query, host))
        }
        Err(error) => answer::error(&error.reply()),
    }
}

fn body(
    app: &App,
    tokens: &Tokens,
    source: &TokenSource,
    query: &TokenQuery,
    host: bool,
) -> String {
    let context = TokenContext {
        resource: &query.resource,
        client_id: source.client_id(),
        now: app.clock.now(),
    };
    if host {
        host_token_body(&tokens.primary, &context)
    } else {
        token_body(&tokens.primary, &tokens.auxiliary, &context)
    }
}
