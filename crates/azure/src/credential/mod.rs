//! Tokens: managed identities through IMDS ([`ImdsClient`]) and service principals through
//! Entra ID ([`ServicePrincipalCredential`], with a secret or a [`ClientCertificate`]).
//! Every token keeps the response fields as received ([`TokenFields`]); every failure says
//! whether it is temporary ([`AuthError::is_temporary`]).

mod certificate;
mod entra;
mod error;
mod imds;
pub(crate) mod read;
mod token;

pub use certificate::{CertificateError, ClientCertificate};
pub use entra::{ClientAuth, EntraEndpoint, PUBLIC_AUTHORITY, ServicePrincipalCredential};
pub use error::{AuthError, ServiceError, Surface};
pub use imds::{IMDS_API_VERSION, IMDS_ENDPOINT, IdentitySelector, ImdsClient};
pub use token::{Token, TokenFields};

/// Any of the ways to get a token, for clients (such as ARM's) that take whichever the
/// configuration names.
#[derive(Clone, Debug)]
pub enum Credential {
    ManagedIdentity {
        imds: ImdsClient,
        selector: IdentitySelector,
    },
    ServicePrincipal(ServicePrincipalCredential),
}

impl Credential {
    pub async fn token(&self, resource: &str) -> Result<Token, AuthError> {
        match self {
            Credential::ManagedIdentity { imds, selector } => imds.token(selector, resource).await,
            Credential::ServicePrincipal(sp) => sp.token(resource).await,
        }
    }
}
