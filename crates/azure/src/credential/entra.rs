//! Service-principal tokens from Entra ID (client credentials with a secret or a certificate).

use std::sync::Arc;
use std::time::SystemTime;

use secrecy::{ExposeSecret, SecretString};
use url::Url;

use super::certificate::ClientCertificate;
use super::error::{AuthError, Surface};
use super::read::{read_token_response, url_without_query};
use super::token::Token;

/// Azure's public-cloud authority; other clouds and emulators are given explicitly.
pub const PUBLIC_AUTHORITY: &str = "https://login.microsoftonline.com/";

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Which token endpoint to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntraEndpoint {
    /// `/{tenant}/oauth2/token?api-version=1.0` with `resource=`: what upstream's clients
    /// used; every response field is a string.
    V1,
    /// `/{tenant}/oauth2/v2.0/token` with `scope=<resource>/.default`.
    V2,
}

/// How the service principal proves who it is.
#[derive(Clone)]
pub enum ClientAuth {
    Secret(SecretString),
    Certificate(Arc<ClientCertificate>),
}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientAuth::Secret(_) => f.write_str("Secret(<redacted>)"),
            ClientAuth::Certificate(c) => f.debug_tuple("Certificate").field(c).finish(),
        }
    }
}

/// A service principal in one tenant, at one authority.
#[derive(Clone, Debug)]
pub struct ServicePrincipalCredential {
    http: reqwest::Client,
    authority: Url,
    tenant_id: String,
    client_id: String,
    auth: ClientAuth,
    endpoint: EntraEndpoint,
}

impl ServicePrincipalCredential {
    /// `http` is the HTTPS client ([`crate::http::HttpOptions::https_client`]); `authority`
    /// is the Entra host, e.g. [`PUBLIC_AUTHORITY`] (a path prefix is kept).
    pub fn new(
        http: reqwest::Client,
        authority: Url,
        tenant_id: &str,
        client_id: &str,
        auth: ClientAuth,
        endpoint: EntraEndpoint,
    ) -> Self {
        Self {
            http,
            authority,
            tenant_id: tenant_id.to_string(),
            client_id: client_id.to_string(),
            auth,
            endpoint,
        }
    }

    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    pub fn tenant_id(&self) -> &str {
        &self.tenant_id
    }

    /// A token for `resource` (for v2 the scope is `<resource>/.default`).
    pub async fn token(&self, resource: &str) -> Result<Token, AuthError> {
        let url = token_url(&self.authority, &self.tenant_id, self.endpoint)?;
        let mut form: Vec<(&str, String)> = vec![
            ("grant_type", "client_credentials".into()),
            ("client_id", self.client_id.clone()),
        ];
        match self.endpoint {
            EntraEndpoint::V1 => form.push(("resource", resource.to_string())),
            EntraEndpoint::V2 => form.push(("scope", default_scope(resource))),
        }
        match &self.auth {
            ClientAuth::Secret(secret) => {
                form.push(("client_secret", secret.expose_secret().to_string()));
            }
            ClientAuth::Certificate(certificate) => {
                let jti = uuid::Uuid::new_v4().to_string();
                let assertion = certificate.assertion(
                    &self.client_id,
                    url.as_str(),
                    SystemTime::now(),
                    &jti,
                )?;
                form.push(("client_assertion_type", ASSERTION_TYPE.into()));
                form.push(("client_assertion", assertion));
            }
        }
        let response = self
            .http
            .post(url.clone())
            .form(&form)
            .send()
            .await
            .map_err(|source: reqwest::Error| AuthError::Transport {
                surface: Surface::Entra,
                url: url_without_query(&url),
                source: source.without_url(),
            })?;
        read_token_response(Surface::Entra, &url, response).await
    }
}

/// The token endpoint of `tenant` under `authority`. The authority is taken as a directory
/// whether or not it ends in `/` (upstream's URL resolution dropped its last segment
/// otherwise, a trap we do not copy).
fn token_url(authority: &Url, tenant: &str, endpoint: EntraEndpoint) -> Result<Url, AuthError> {
    let invalid = |reason: &str| AuthError::InvalidRequest {
        surface: Surface::Entra,
        reason: reason.to_string(),
    };
    if tenant.is_empty() {
        return Err(invalid("the tenant ID is empty"));
    }
    if !matches!(authority.scheme(), "https" | "http") {
        return Err(invalid("the authority must be an http(s) URL"));
    }
    let mut url = authority.clone();
    url.set_query(None);
    url.set_fragment(None);
    {
        let mut segments = url
            .path_segments_mut()
            .map_err(|()| invalid("the authority is not a base URL"))?;
        segments.pop_if_empty().push(tenant).push("oauth2");
        match endpoint {
            EntraEndpoint::V1 => segments.push("token"),
            EntraEndpoint::V2 => segments.push("v2.0").push("token"),
        };
    }
    if endpoint == EntraEndpoint::V1 {
        url.set_query(Some("api-version=1.0"));
    }
    Ok(url)
}

/// The v2 scope for a v1 resource: `<resource>/.default`, kept verbatim otherwise (a resource
/// ending in `/` gives `…//.default`, which asks for the audience with the slash).
fn default_scope(resource: &str) -> String {
    if resource.ends_with("/.default") {
        resource.to_string()
    } else {
        format!("{resource}/.default")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    #[test]
    fn v1_and_v2_token_urls() {
        let authority = url(PUBLIC_AUTHORITY);
        assert_eq!(
            token_url(&authority, "t1", EntraEndpoint::V1)
                .unwrap()
                .as_str(),
            "https://login.microsoftonline.com/t1/oauth2/token?api-version=1.0"
        );
        assert_eq!(
            token_url(&authority, "t1", EntraEndpoint::V2)
                .unwrap()
                .as_str(),
            "https://login.microsoftonline.com/t1/oauth2/v2.0/token"
        );
    }

    #[test]
    fn the_authority_is_a_directory_with_or_without_a_slash() {
        for authority in ["https://127.0.0.1:8443/aad", "https://127.0.0.1:8443/aad/"] {
            assert_eq!(
                token_url(&url(authority), "t", EntraEndpoint::V2)
                    .unwrap()
                    .as_str(),
                "https://127.0.0.1:8443/aad/t/oauth2/v2.0/token"
            );
        }
        assert_eq!(
            token_url(&url("https://127.0.0.1:8443"), "t", EntraEndpoint::V1)
                .unwrap()
                .as_str(),
            "https://127.0.0.1:8443/t/oauth2/token?api-version=1.0"
        );
    }

    #[test]
    fn a_tenant_is_one_path_segment() {
        let u = token_url(&url(PUBLIC_AUTHORITY), "a/b?c", EntraEndpoint::V2).unwrap();
        assert_eq!(u.path(), "/a%2Fb%3Fc/oauth2/v2.0/token");
    }

    #[test]
    fn unusable_authorities_and_tenants_are_refused() {
        assert!(token_url(&url(PUBLIC_AUTHORITY), "", EntraEndpoint::V1).is_err());
        assert!(token_url(&url("mailto:x@y"), "t", EntraEndpoint::V1).is_err());
        assert!(token_url(&url("ftp://h/"), "t", EntraEndpoint::V1).is_err());
    }

    #[test]
    fn the_default_scope_keeps_the_resource_verbatim() {
        assert_eq!(
            default_scope("https://management.azure.com"),
            "https://management.azure.com/.default"
        );
        assert_eq!(
            default_scope("https://management.azure.com/"),
            "https://management.azure.com//.default"
        );
        assert_eq!(default_scope("api://x/.default"), "api://x/.default");
    }

    #[test]
    fn debug_never_shows_a_secret() {
        let auth = ClientAuth::Secret(SecretString::from("hunter2"));
        assert_eq!(format!("{auth:?}"), "Secret(<redacted>)");
    }
}
