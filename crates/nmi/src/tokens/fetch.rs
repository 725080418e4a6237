//! One token acquisition for a [`TokenSource`]: IMDS for managed identities and excepted pods,
//! Entra ID (v1, client credentials) for service principals, whose credential is read from its
//! Secret at that moment.

use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};
use podid_azure::credential::{
    AuthError, CertificateError, ClientAuth, ClientCertificate, EntraEndpoint, IdentitySelector,
    ImdsClient, ServicePrincipalCredential,
};
use secrecy::ExposeSecret;
use url::Url;

use super::Tokens;
use super::secret::{self, SecretProblem};
use crate::metrics::{KubeOperation, Metrics, TokenOperation};
use crate::reply::{ErrorCode, ErrorReply};
use crate::response::token_failure;
use crate::selection::{SecretRef, ServicePrincipal, TokenSource};

/// Why no token was obtained. No variant holds a secret or a token.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("the Secret {0} of the service principal does not exist")]
    SecretMissing(String),
    #[error("reading the Secret {secret} of the service principal failed: {source}")]
    SecretUnreadable {
        secret: String,
        #[source]
        source: kube::Error,
    },
    #[error("the Secret {secret} of the service principal cannot be used: {problem}")]
    SecretContent {
        secret: String,
        problem: SecretProblem,
    },
    #[error("the certificate in Secret {secret} cannot be used: {source}")]
    Certificate {
        secret: String,
        #[source]
        source: CertificateError,
    },
    #[error("spec.adEndpoint {endpoint:?} is not a URL: {reason}")]
    Authority { endpoint: String, reason: String },
}

impl FetchError {
    /// The answer: IMDS's and Entra ID's failures as the core classifies them
    /// ([`token_failure`]); a Secret the API server could not give 503 (it may answer later);
    /// a missing or unusable Secret, certificate or authority 403 (nothing changes by retrying).
    pub fn reply(&self) -> ErrorReply {
        match self {
            Self::Auth(error) => token_failure(error),
            Self::SecretUnreadable { .. } => {
                ErrorReply::new(503, ErrorCode::ServiceUnavailable, self.to_string())
            }
            _ => ErrorReply::new(403, ErrorCode::Forbidden, self.to_string()),
        }
    }
}

/// Gets tokens from IMDS and Entra ID.
pub struct Fetcher {
    imds: ImdsClient,
    https: reqwest::Client,
    kube: Client,
    default_authority: Url,
    metrics: Arc<Metrics>,
}

impl Fetcher {
    /// `imds` is this node's IMDS (never through a proxy); `https` the client for Entra ID;
    /// `default_authority` is used when an identity has no `adEndpoint`.
    pub fn new(
        imds: ImdsClient,
        https: reqwest::Client,
        kube: Client,
        default_authority: Url,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            imds,
            https,
            kube,
            default_authority,
            metrics,
        }
    }

    pub async fn fetch(&self, source: &TokenSource, resource: &str) -> Result<Tokens, FetchError> {
        let operation = operation_of(source);
        let started = Instant::now();
        let result = match source {
            TokenSource::Imds { selector } | TokenSource::PassThrough { selector } => self
                .imds
                .token(selector, resource)
                .await
                .map(|primary| Tokens::new(&primary, &[], resource, source.client_id()))
                .map_err(FetchError::from),
            TokenSource::ClientSecret(sp) => self.client_secret(sp, resource).await,
            TokenSource::ClientCertificate(sp) => self.client_certificate(sp, resource).await,
        };
        match &result {
            Ok(_) => self.metrics.token_fetched(operation, started.elapsed()),
            Err(error) => {
                self.metrics.token_failed(operation);
                if let FetchError::SecretUnreadable { .. } = error {
                    self.metrics.kube_failed(KubeOperation::GetSecret);
                }
                tracing::warn!(%error, "token acquisition failed");
            }
        }
        result
    }

    async fn client_secret(
        &self,
        sp: &ServicePrincipal,
        resource: &str,
    ) -> Result<Tokens, FetchError> {
        let secret = self.read_secret(&sp.secret).await?;
        let data = secret.data.unwrap_or_default();
        let client_secret =
            secret::client_secret(&data).map_err(|problem| FetchError::SecretContent {
                secret: describe(&sp.secret),
                problem,
            })?;
        self.entra_tokens(sp, ClientAuth::Secret(client_secret), resource)
            .await
    }

    async fn client_certificate(
        &self,
        sp: &ServicePrincipal,
        resource: &str,
    ) -> Result<Tokens, FetchError> {
        let secret = self.read_secret(&sp.secret).await?;
        let data = secret.data.unwrap_or_default();
        let (bytes, password) =
            secret::certificate(&data).map_err(|problem| FetchError::SecretContent {
                secret: describe(&sp.secret),
                problem,
            })?;
        let certificate =
            ClientCertificate::from_pkcs12(bytes, password.expose_secret()).map_err(|source| {
                FetchError::Certificate {
                    secret: describe(&sp.secret),
                    source,
                }
            })?;
        let auth = ClientAuth::Certificate(Arc::new(certificate));
        self.entra_tokens(sp, auth, resource).await
    }

    /// The primary tenant's token, then each auxiliary tenant's, as upstream asked for them.
    async fn entra_tokens(
        &self,
        sp: &ServicePrincipal,
        auth: ClientAuth,
        resource: &str,
    ) -> Result<Tokens, FetchError> {
        let authority = match &sp.ad_endpoint {
            Some(endpoint) => Url::parse(endpoint).map_err(|e| FetchError::Authority {
                endpoint: endpoint.clone(),
                reason: e.to_string(),
            })?,
            None => self.default_authority.clone(),
        };
        let credential = |tenant: &str| {
            ServicePrincipalCredential::new(
                self.https.clone(),
                authority.clone(),
                tenant,
                &sp.client_id,
                auth.clone(),
                EntraEndpoint::V1,
            )
        };
        let primary = credential(&sp.tenant_id).token(resource).await?;
        let mut auxiliary = Vec::with_capacity(sp.auxiliary_tenant_ids.len());
        for tenant in &sp.auxiliary_tenant_ids {
            auxiliary.push(credential(tenant).token(resource).await?);
        }
        Ok(Tokens::new(
            &primary,
            &auxiliary,
            resource,
            Some(&sp.client_id),
        ))
    }

    async fn read_secret(&self, reference: &SecretRef) -> Result<Secret, FetchError> {
        let api: Api<Secret> = Api::namespaced(self.kube.clone(), &reference.namespace);
        match api.get_opt(&reference.name).await {
            Ok(Some(secret)) => Ok(secret),
            Ok(None) => Err(FetchError::SecretMissing(describe(reference))),
            Err(source) => Err(FetchError::SecretUnreadable {
                secret: describe(reference),
                source,
            }),
        }
    }
}

fn describe(reference: &SecretRef) -> String {
    format!("{}/{}", reference.namespace, reference.name)
}

fn operation_of(source: &TokenSource) -> TokenOperation {
    match source {
        TokenSource::Imds { selector } | TokenSource::PassThrough { selector } => {
            if *selector == IdentitySelector::Default {
                TokenOperation::SystemAssigned
            } else {
                TokenOperation::UserAssigned
            }
        }
        TokenSource::ClientSecret(_) | TokenSource::ClientCertificate(_) => {
            TokenOperation::ServicePrincipal
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_and_configuration_problems_are_permanent_api_failures_temporary() {
        let content = FetchError::SecretContent {
            secret: "ns/sp".into(),
            problem: SecretProblem::Empty,
        };
        assert_eq!(content.reply().status, 403);
        assert_eq!(
            content.reply().description,
            "the Secret ns/sp of the service principal cannot be used: it has no data"
        );
        assert_eq!(
            FetchError::SecretMissing("ns/sp".into()).reply().status,
            403
        );
        let authority = FetchError::Authority {
            endpoint: "not a url".into(),
            reason: "relative URL without a base".into(),
        };
        assert_eq!(authority.reply().status, 403);
        let unreadable = FetchError::SecretUnreadable {
            secret: "ns/sp".into(),
            source: kube::Error::LinesCodecMaxLineLengthExceeded,
        };
        assert_eq!(unreadable.reply().status, 503);
    }
}
