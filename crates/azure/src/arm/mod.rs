//! Azure Resource Manager, compute: GET a VM or scale set, PATCH its identities and wait for
//! the operation, list VMs and scale-set instances, with typed errors and the remaining-request counters of every answer.
//!
//! Throttling is the caller's to handle: a 429 comes back at once as
//! [`ArmError::Throttled`] with ARM's `Retry-After`, never slept on here. The only request
//! repeated inside the client is one refused with 401 (a token ARM considers expired), once,
//! with a fresh token.

mod error;
mod list;
mod lro;
mod machine;
mod plan;
mod rate_limit;
mod tokens;

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use reqwest::Method;
use reqwest::header::HeaderMap;
use url::Url;

pub use error::{ArmError, ArmErrorBody, ArmStatusError, OperationError};
pub use list::ListedMachine;
pub use lro::PollOptions;
pub use machine::{
    IdentityType, Machine, MachineId, MachineIdentity, MachineKind, UserAssignedIdentity,
};
pub use plan::{IdentityChange, IdentityPatch, MAX_IDENTITIES_PER_PATCH, plan_exact, plan_update};
pub use rate_limit::RateLimits;

use crate::cloud::CloudEnvironment;
use crate::credential::{Credential, read::url_without_query};
use crate::wire;
use lro::OperationState;
pub(crate) use lro::{initial_state, poll_state, poll_target};
use tokens::TokenCache;

/// The compute api-version upstream used; every identity behaviour here is defined by it.
pub const COMPUTE_API_VERSION: &str = "2019-12-01";

/// A successful call's result and the counters ARM sent with it (merged over every request
/// the call made).
#[derive(Debug, Clone)]
pub struct ArmResponse<T> {
    pub value: T,
    pub rate_limits: RateLimits,
}

/// A client for one ARM endpoint with one credential.
#[derive(Clone, Debug)]
pub struct ArmClient {
    http: reqwest::Client,
    base: Url,
    tokens: Arc<TokenCache>,
    poll: PollOptions,
}

/// One answer, read whole.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Vec<u8>,
    pub(crate) rate_limits: RateLimits,
}

impl ArmClient {
    /// `http` is the HTTPS client ([`crate::http::HttpOptions::https_client`]); `base` the
    /// ARM endpoint (a path prefix is kept); tokens are requested for `audience`.
    pub fn new(http: reqwest::Client, base: Url, credential: Credential, audience: &str) -> Self {
        Self {
            http,
            base,
            tokens: Arc::new(TokenCache::new(credential, audience.to_string())),
            poll: PollOptions::default(),
        }
    }

    /// A client for a cloud's ARM endpoint and audience.
    pub fn for_cloud(
        http: reqwest::Client,
        cloud: &CloudEnvironment,
        credential: Credential,
    ) -> Self {
        Self::new(
            http,
            cloud.resource_manager_endpoint.clone(),
            credential,
            cloud.arm_audience(),
        )
    }

    pub fn with_poll_options(mut self, poll: PollOptions) -> Self {
        self.poll = poll;
        self
    }

    /// `GET` a VM or scale set.
    pub async fn get_machine(&self, id: &MachineId) -> Result<ArmResponse<Machine>, ArmError> {
        let url = self.machine_url(id);
        let answer = self.call(Method::GET, &url, None).await?;
        let machine = Machine::from_body(id.clone(), &answer.body).map_err(|reason| {
            ArmError::InvalidResponse {
                url: url_without_query(&url),
                reason,
            }
        })?;
        Ok(ArmResponse {
            value: machine,
            rate_limits: answer.rate_limits,
        })
    }

    /// Sends one identity PATCH and waits for its operation to end.
    pub async fn patch_identity(
        &self,
        id: &MachineId,
        patch: &IdentityPatch,
    ) -> Result<ArmResponse<()>, ArmError> {
        let url = self.machine_url(id);
        let first = self.call(Method::PATCH, &url, Some(&patch.body())).await?;
        let mut rate_limits = first.rate_limits.clone();
        let invalid = |reason: String| ArmError::InvalidResponse {
            url: url_without_query(&url),
            reason,
        };
        let initial = lro::initial_state(first.status, &first.body);
        if let Some(outcome) = operation_outcome(initial, &rate_limits) {
            return outcome;
        }
        let target = lro::poll_target(first.status, &first.headers, &url).map_err(invalid)?;
        let deadline = Instant::now() + self.poll.timeout;
        let mut delay = self.poll.delay(&first.headers, SystemTime::now());
        loop {
            if Instant::now() + delay >= deadline {
                return Err(ArmError::OperationTimedOut(self.poll.timeout));
            }
            tokio::time::sleep(delay).await;
            let answer = self.call(Method::GET, target.url(), None).await?;
            rate_limits.merge(answer.rate_limits.clone());
            let state = lro::poll_state(&target, answer.status, &answer.body).map_err(invalid)?;
            if let Some(outcome) = operation_outcome(state, &rate_limits) {
                return outcome;
            }
            delay = self.poll.delay(&answer.headers, SystemTime::now());
        }
    }

    /// Applies `change` to a machine as upstream's controller did: GET it, refuse one being
    /// deleted, then send the PATCHes [`plan_update`] gives, each waited for. Returns how many
    /// PATCHes were sent (none when nothing changes).
    pub async fn update_identities(
        &self,
        id: &MachineId,
        change: &IdentityChange,
    ) -> Result<ArmResponse<usize>, ArmError> {
        if change.is_empty() {
            return Ok(ArmResponse {
                value: 0,
                rate_limits: RateLimits::default(),
            });
        }
        let current = self.get_machine(id).await?;
        if current.value.is_deleting() {
            return Err(ArmError::Deleting(id.to_string()));
        }
        let mut rate_limits = current.rate_limits;
        let patches = plan_update(&current.value.identity, change);
        for patch in &patches {
            rate_limits.merge(self.patch_identity(id, patch).await?.rate_limits);
        }
        Ok(ArmResponse {
            value: patches.len(),
            rate_limits,
        })
    }

    fn machine_url(&self, id: &MachineId) -> Url {
        let mut url = self.base.clone();
        url.set_path(&format!("{}{id}", self.base.path().trim_end_matches('/')));
        url.set_query(Some(&format!("api-version={COMPUTE_API_VERSION}")));
        url
    }

    /// One request, read whole; a 2xx answer or the error it is.
    async fn call(
        &self,
        method: Method,
        url: &Url,
        body: Option<&serde_json::Value>,
    ) -> Result<Answer, ArmError> {
        let answer = self.send(method.clone(), url, body).await?;
        if (200..300).contains(&answer.status) {
            return Ok(answer);
        }
        Err(status_error(&method, url, answer, SystemTime::now()))
    }

    /// Sends with the cached token; on 401 once more with a fresh one (ARM's clock, not ours,
    /// decides when a token has expired).
    async fn send(
        &self,
        method: Method,
        url: &Url,
        body: Option<&serde_json::Value>,
    ) -> Result<Answer, ArmError> {
        let mut retried = false;
        loop {
            let token = self.tokens.token().await?;
            let mut request = self
                .http
                .request(method.clone(), url.clone())
                .bearer_auth(token.access_token());
            if let Some(body) = body {
                request = request.json(body);
            }
            let transport = |source: reqwest::Error| ArmError::Transport {
                method: method.to_string(),
                url: url_without_query(url),
                source: source.without_url(),
            };
            let response = request.send().await.map_err(transport)?;
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let body_bytes = response.bytes().await.map_err(transport)?.to_vec();
            tracing::debug!(%method, url = %url_without_query(url), status, "ARM answered");
            if status == 401 && !retried {
                self.tokens.forget(&token).await;
                retried = true;
                continue;
            }
            return Ok(Answer {
                status,
                rate_limits: RateLimits::from_headers(&headers),
                headers,
                body: body_bytes,
            });
        }
    }
}

/// The error a non-2xx answer received at `now` is. Pure, so the fuzz targets reach it
/// (`crate::fuzzing`).
pub(crate) fn status_error(
    method: &Method,
    url: &Url,
    answer: Answer,
    now: SystemTime,
) -> ArmError {
    let error = ArmStatusError {
        method: method.to_string(),
        url: url_without_query(url),
        status: answer.status,
        error: ArmErrorBody::read(&answer.body).unwrap_or_default(),
        retry_after: wire::retry_after(&answer.headers, now),
        rate_limits: answer.rate_limits,
        request_id: wire::header(&answer.headers, "x-ms-request-id").map(str::to_string),
    };
    tracing::debug!(
        %method, url = %error.url, status = error.status, code = %error.error.code,
        request_id = ?error.request_id, "ARM refused the request"
    );
    if error.status == 429 {
        ArmError::Throttled(Box::new(error))
    } else {
        ArmError::Status(Box::new(error))
    }
}

/// What an operation in `state` has come to, with the rate limits of every answer so far;
/// `None` while it is still in progress.
fn operation_outcome(
    state: OperationState,
    rate_limits: &RateLimits,
) -> Option<Result<ArmResponse<()>, ArmError>> {
    match state {
        OperationState::InProgress => None,
        OperationState::Succeeded => Some(Ok(ArmResponse {
            value: (),
            rate_limits: rate_limits.clone(),
        })),
        OperationState::Ended { status, error } => {
            Some(Err(ArmError::OperationFailed(Box::new(OperationError {
                status,
                error,
                rate_limits: rate_limits.clone(),
            }))))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credential::{IdentitySelector, ImdsClient};
    use crate::http::HttpOptions;

    fn client(base: &str) -> ArmClient {
        let options = HttpOptions::default();
        let imds = ImdsClient::new(&options, Url::parse("http://127.0.0.1:9").unwrap()).unwrap();
        ArmClient::new(
            options.https_client().unwrap(),
            Url::parse(base).unwrap(),
            Credential::ManagedIdentity {
                imds,
                selector: IdentitySelector::Default,
            },
            "https://management.azure.com/",
        )
    }

    #[test]
    fn machine_urls_keep_a_base_path_and_carry_the_api_version() {
        let id = MachineId::new(MachineKind::VirtualMachineScaleSet, "s", "rg", "pool0");
        for base in ["https://127.0.0.1:9443", "https://127.0.0.1:9443/"] {
            assert_eq!(
                client(base).machine_url(&id).as_str(),
                "https://127.0.0.1:9443/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachineScaleSets/pool0?api-version=2019-12-01"
            );
        }
        assert_eq!(
            client("https://127.0.0.1:9443/arm/")
                .machine_url(&id)
                .path(),
            "/arm/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachineScaleSets/pool0"
        );
    }
}
