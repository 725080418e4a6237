//! Managed-identity tokens from the Instance Metadata Service.

use url::Url;

use super::error::{AuthError, Surface};
use super::read::{read_token_response, url_without_query};
use super::token::Token;
use crate::http::{HttpError, HttpOptions};

/// Azure's IMDS. Only production wiring uses it; tests name an emulator's address.
pub const IMDS_ENDPOINT: &str = "http://169.254.169.254";

/// The api-version upstream's clients send; every IMDS answers it.
pub const IMDS_API_VERSION: &str = "2018-02-01";

const TOKEN_PATH: &str = "/metadata/identity/oauth2/token";

/// Which of the machine's identities a token is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentitySelector {
    /// The system-assigned identity, or the only user-assigned one.
    Default,
    /// A user-assigned identity by client (application) ID.
    ClientId(String),
    /// A user-assigned identity by object (principal) ID.
    ObjectId(String),
    /// A user-assigned identity by ARM resource ID.
    ResourceId(String),
}

impl IdentitySelector {
    /// The query parameter naming the identity. A resource ID goes as `mi_res_id`, the
    /// spelling upstream's clients send (IMDS also takes `msi_res_id`).
    fn query(&self) -> Option<(&'static str, &str)> {
        match self {
            IdentitySelector::Default => None,
            IdentitySelector::ClientId(id) => Some(("client_id", id)),
            IdentitySelector::ObjectId(id) => Some(("object_id", id)),
            IdentitySelector::ResourceId(id) => Some(("mi_res_id", id)),
        }
    }
}

/// One machine's IMDS.
#[derive(Clone, Debug)]
pub struct ImdsClient {
    http: reqwest::Client,
    endpoint: Url,
}

impl ImdsClient {
    /// A client for the IMDS at `endpoint` (`http://host[:port]`), never through a proxy.
    pub fn new(options: &HttpOptions, endpoint: Url) -> Result<Self, HttpError> {
        Ok(Self {
            http: options.imds_client()?,
            endpoint,
        })
    }

    /// A client for the IMDS at `endpoint` sharing `http`, which must come from
    /// [`HttpOptions::imds_client`] (no proxy, no redirects): a caller that also talks to IMDS
    /// directly (NMI's proxy) keeps one connection pool and TLS setup instead of two.
    pub fn with_client(http: reqwest::Client, endpoint: Url) -> Self {
        Self { http, endpoint }
    }

    pub fn endpoint(&self) -> &Url {
        &self.endpoint
    }

    /// A token for `resource` (passed through as given: `https://management.azure.com` and
    /// `https://management.azure.com/` are different audiences).
    pub async fn token(
        &self,
        selector: &IdentitySelector,
        resource: &str,
    ) -> Result<Token, AuthError> {
        let url = token_url(&self.endpoint, selector, resource);
        let response = self
            .http
            .get(url.clone())
            .header("Metadata", "true")
            .send()
            .await
            .map_err(|source: reqwest::Error| AuthError::Transport {
                surface: Surface::Imds,
                url: url_without_query(&url),
                source: source.without_url(),
            })?;
        read_token_response(Surface::Imds, &url, response).await
    }
}

/// `GET {endpoint}/metadata/identity/oauth2/token?…`, query keys in sorted order as upstream
/// sent them.
fn token_url(endpoint: &Url, selector: &IdentitySelector, resource: &str) -> Url {
    let mut url = endpoint.clone();
    let path = format!("{}{TOKEN_PATH}", endpoint.path().trim_end_matches('/'));
    url.set_path(&path);
    url.set_query(None);
    {
        // Every selector key sorts between `api-version` and `resource`.
        let mut query = url.query_pairs_mut();
        query.append_pair("api-version", IMDS_API_VERSION);
        if let Some((key, value)) = selector.query() {
            query.append_pair(key, value);
        }
        query.append_pair("resource", resource);
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint() -> Url {
        Url::parse("http://127.0.0.1:4000").unwrap()
    }

    #[test]
    fn the_url_has_the_api_version_resource_and_selector_in_sorted_order() {
        let cases = [
            (
                IdentitySelector::Default,
                "api-version=2018-02-01&resource=https%3A%2F%2Fmanagement.azure.com%2F",
            ),
            (
                IdentitySelector::ClientId("c1".into()),
                "api-version=2018-02-01&client_id=c1&resource=https%3A%2F%2Fmanagement.azure.com%2F",
            ),
            (
                IdentitySelector::ResourceId("/subscriptions/s/x".into()),
                "api-version=2018-02-01&mi_res_id=%2Fsubscriptions%2Fs%2Fx&resource=https%3A%2F%2Fmanagement.azure.com%2F",
            ),
            (
                IdentitySelector::ObjectId("o1".into()),
                "api-version=2018-02-01&object_id=o1&resource=https%3A%2F%2Fmanagement.azure.com%2F",
            ),
        ];
        for (selector, query) in cases {
            let url = token_url(&endpoint(), &selector, "https://management.azure.com/");
            assert_eq!(url.path(), "/metadata/identity/oauth2/token");
            assert_eq!(url.query(), Some(query), "{selector:?}");
        }
    }

    #[test]
    fn an_endpoint_path_prefix_and_query_are_handled() {
        let base = Url::parse("http://127.0.0.1:4000/prefix/?x=1").unwrap();
        let url = token_url(&base, &IdentitySelector::Default, "r");
        assert_eq!(url.path(), "/prefix/metadata/identity/oauth2/token");
        assert_eq!(url.query(), Some("api-version=2018-02-01&resource=r"));
        assert_eq!(
            url_without_query(&url),
            "http://127.0.0.1:4000/prefix/metadata/identity/oauth2/token"
        );
    }
}
