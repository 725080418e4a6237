//! Where the token for a chosen AzureIdentity comes from, by its type.

use podid_api::rules::MAX_AUXILIARY_TENANTS;
use podid_api::{AzureIdentitySpec, IdentityType};
use podid_azure::credential::IdentitySelector;

use crate::request::RequestedIdentity;

/// What serves one token request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// Type 0: this node's IMDS, for the identity the selector names.
    Imds { selector: IdentitySelector },
    /// Type 1: Entra ID with the client secret in `secret` (key `clientSecret`).
    ClientSecret(ServicePrincipal),
    /// Type 2: Entra ID with the PKCS#12 certificate in `secret` (keys `certificate`,
    /// `password`).
    ClientCertificate(ServicePrincipal),
    /// An excepted pod: this node's IMDS with whatever the pod asked for, unchecked.
    PassThrough { selector: IdentitySelector },
}

impl TokenSource {
    /// The client ID the answer names when the token response itself does not.
    pub fn client_id(&self) -> Option<&str> {
        match self {
            Self::Imds { selector } | Self::PassThrough { selector } => match selector {
                IdentitySelector::ClientId(id) => Some(id),
                _ => None,
            },
            Self::ClientSecret(sp) | Self::ClientCertificate(sp) => Some(&sp.client_id),
        }
    }
}

/// A service principal's coordinates; the secret itself is read when the token is needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePrincipal {
    pub tenant_id: String,
    pub client_id: String,
    pub secret: SecretRef,
    /// Type 1 only: tenants that each get a token too, in order, after the primary.
    pub auxiliary_tenant_ids: Vec<String>,
    /// `spec.adEndpoint`; `None` means the cloud's default authority.
    pub ad_endpoint: Option<String>,
}

/// The Secret holding a service principal's credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRef {
    pub namespace: String,
    pub name: String,
}

/// Why an AzureIdentity cannot produce a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unusable {
    #[error("a user-assigned identity (type 0) needs spec.clientID or spec.resourceID")]
    NoClientOrResourceId,
    #[error("a service principal (type 1 or 2) needs spec.{0}")]
    MissingField(&'static str),
    #[error(
        "spec.auxiliaryTenantIDs lists {0} tenants; a service principal can get tokens from at most {MAX_AUXILIARY_TENANTS}"
    )]
    TooManyAuxiliaryTenants(usize),
    #[error("spec.auxiliaryTenantIDs has an empty entry")]
    EmptyAuxiliaryTenant,
    #[error("spec.type {0} is not 0, 1 or 2")]
    UnknownType(i64),
}

/// The source of an identity's tokens.
///
/// Deviation: a type-0 identity without `clientID` is asked for by its `resourceID`; upstream
/// sent an empty `client_id`, which IMDS reads as "no selector" and answers with the node's
/// system-assigned or only identity.
pub fn token_source(spec: &AzureIdentitySpec) -> Result<TokenSource, Unusable> {
    let present = |value: &Option<String>| value.clone().filter(|text| !text.is_empty());
    match spec.identity_type() {
        IdentityType::UserAssignedManagedIdentity => {
            let selector = match (present(&spec.client_id), present(&spec.resource_id)) {
                (Some(client_id), _) => IdentitySelector::ClientId(client_id),
                (None, Some(resource_id)) => IdentitySelector::ResourceId(resource_id),
                (None, None) => return Err(Unusable::NoClientOrResourceId),
            };
            Ok(TokenSource::Imds { selector })
        }
        IdentityType::ServicePrincipalSecret => {
            let sp = service_principal(spec, true)?;
            Ok(TokenSource::ClientSecret(sp))
        }
        IdentityType::ServicePrincipalCertificate => {
            // Upstream ignored auxiliary tenants for certificates.
            let sp = service_principal(spec, false)?;
            Ok(TokenSource::ClientCertificate(sp))
        }
        IdentityType::Unknown(other) => Err(Unusable::UnknownType(other)),
    }
}

fn service_principal(
    spec: &AzureIdentitySpec,
    with_auxiliary_tenants: bool,
) -> Result<ServicePrincipal, Unusable> {
    let required = |value: Option<&String>, field: &'static str| {
        value
            .filter(|text| !text.is_empty())
            .cloned()
            .ok_or(Unusable::MissingField(field))
    };
    let password = spec.client_password.as_ref();
    let auxiliary_tenant_ids = if with_auxiliary_tenants {
        spec.auxiliary_tenant_ids.clone().unwrap_or_default()
    } else {
        Vec::new()
    };
    if auxiliary_tenant_ids.len() > MAX_AUXILIARY_TENANTS {
        return Err(Unusable::TooManyAuxiliaryTenants(
            auxiliary_tenant_ids.len(),
        ));
    }
    if auxiliary_tenant_ids.iter().any(String::is_empty) {
        return Err(Unusable::EmptyAuxiliaryTenant);
    }
    Ok(ServicePrincipal {
        tenant_id: required(spec.tenant_id.as_ref(), "tenantID")?,
        client_id: required(spec.client_id.as_ref(), "clientID")?,
        secret: SecretRef {
            namespace: required(
                password.and_then(|p| p.namespace.as_ref()),
                "clientPassword.namespace",
            )?,
            name: required(
                password.and_then(|p| p.name.as_ref()),
                "clientPassword.name",
            )?,
        },
        auxiliary_tenant_ids,
        ad_endpoint: spec.ad_endpoint.clone().filter(|text| !text.is_empty()),
    })
}

/// The IMDS selector for what the pod asked, passed on unchecked for an excepted pod.
///
/// Deviation: upstream passed only `client_id` (a resource ID was dropped, so the pod got the
/// node's default identity instead of the one it named); every selector is passed here.
pub fn pass_through(requested: &RequestedIdentity) -> TokenSource {
    let selector = match requested {
        RequestedIdentity::Unspecified => IdentitySelector::Default,
        RequestedIdentity::ClientId(id) => IdentitySelector::ClientId(id.clone()),
        RequestedIdentity::ResourceId(id) => IdentitySelector::ResourceId(id.clone()),
        RequestedIdentity::ObjectId(id) => IdentitySelector::ObjectId(id.clone()),
    };
    TokenSource::PassThrough { selector }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::SecretReference;
    use pretty_assertions::assert_eq;

    use super::*;

    fn sp_spec(kind: i64) -> AzureIdentitySpec {
        AzureIdentitySpec {
            identity_type: Some(IdentityType::from(kind)),
            client_id: Some("app".into()),
            tenant_id: Some("tenant".into()),
            client_password: Some(SecretReference {
                name: Some("sp".into()),
                namespace: Some("team".into()),
            }),
            auxiliary_tenant_ids: Some(vec!["aux1".into(), "aux2".into()]),
            ad_endpoint: Some("https://login.example/".into()),
            ..AzureIdentitySpec::default()
        }
    }

    fn expected_sp(auxiliary: &[&str]) -> ServicePrincipal {
        ServicePrincipal {
            tenant_id: "tenant".into(),
            client_id: "app".into(),
            secret: SecretRef {
                namespace: "team".into(),
                name: "sp".into(),
            },
            auxiliary_tenant_ids: auxiliary.iter().map(|t| (*t).to_owned()).collect(),
            ad_endpoint: Some("https://login.example/".into()),
        }
    }

    #[test]
    fn type_0_uses_the_client_id_else_the_resource_id() {
        let both = AzureIdentitySpec {
            client_id: Some("c".into()),
            resource_id: Some("/subscriptions/s/x".into()),
            ..AzureIdentitySpec::default()
        };
        let source = token_source(&both).unwrap();
        assert_eq!(
            source,
            TokenSource::Imds {
                selector: IdentitySelector::ClientId("c".into())
            }
        );
        assert_eq!(source.client_id(), Some("c"));
        let resource_only = AzureIdentitySpec {
            client_id: Some(String::new()),
            ..both.clone()
        };
        let source = token_source(&resource_only).unwrap();
        assert_eq!(
            source,
            TokenSource::Imds {
                selector: IdentitySelector::ResourceId("/subscriptions/s/x".into())
            }
        );
        assert_eq!(source.client_id(), None);
        assert_eq!(
            token_source(&AzureIdentitySpec::default()),
            Err(Unusable::NoClientOrResourceId)
        );
    }

    #[test]
    fn service_principals_keep_their_coordinates() {
        let secret = token_source(&sp_spec(1)).unwrap();
        assert_eq!(
            secret,
            TokenSource::ClientSecret(expected_sp(&["aux1", "aux2"]))
        );
        assert_eq!(secret.client_id(), Some("app"));
        assert_eq!(
            token_source(&sp_spec(2)),
            Ok(TokenSource::ClientCertificate(expected_sp(&[])))
        );
        let default_authority = AzureIdentitySpec {
            ad_endpoint: Some(String::new()),
            ..sp_spec(1)
        };
        let TokenSource::ClientSecret(sp) = token_source(&default_authority).unwrap() else {
            panic!("type 1 is a client secret");
        };
        assert_eq!(sp.ad_endpoint, None);
    }

    #[test]
    fn service_principals_missing_a_coordinate_are_unusable() {
        type Break = fn(&mut AzureIdentitySpec);
        let cases: [(Break, &str); 4] = [
            (|s| s.tenant_id = None, "tenantID"),
            (|s| s.client_id = Some(String::new()), "clientID"),
            (|s| s.client_password = None, "clientPassword.namespace"),
            (
                |s| {
                    s.client_password = Some(SecretReference {
                        name: None,
                        namespace: Some("n".into()),
                    })
                },
                "clientPassword.name",
            ),
        ];
        for (break_it, field) in cases {
            let mut spec = sp_spec(1);
            break_it(&mut spec);
            assert_eq!(
                token_source(&spec),
                Err(Unusable::MissingField(field)),
                "{field}"
            );
        }
    }

    #[test]
    fn auxiliary_tenants_are_limited_and_non_empty() {
        let mut spec = sp_spec(1);
        spec.auxiliary_tenant_ids = Some(vec!["a".into(), "b".into(), "c".into(), "d".into()]);
        assert_eq!(
            token_source(&spec),
            Err(Unusable::TooManyAuxiliaryTenants(4))
        );
        // Certificates ignore them, as upstream did.
        spec.identity_type = Some(IdentityType::from(2));
        assert!(token_source(&spec).is_ok());
        let mut spec = sp_spec(1);
        spec.auxiliary_tenant_ids = Some(vec![String::new()]);
        assert_eq!(token_source(&spec), Err(Unusable::EmptyAuxiliaryTenant));
    }

    #[test]
    fn unknown_types_are_unusable() {
        assert_eq!(token_source(&sp_spec(3)), Err(Unusable::UnknownType(3)));
        assert_eq!(token_source(&sp_spec(-1)), Err(Unusable::UnknownType(-1)));
    }

    #[test]
    fn excepted_pods_get_exactly_what_they_asked_for() {
        for (requested, selector) in [
            (RequestedIdentity::Unspecified, IdentitySelector::Default),
            (
                RequestedIdentity::ClientId("c".into()),
                IdentitySelector::ClientId("c".into()),
            ),
            (
                RequestedIdentity::ResourceId("r".into()),
                IdentitySelector::ResourceId("r".into()),
            ),
            (
                RequestedIdentity::ObjectId("o".into()),
                IdentitySelector::ObjectId("o".into()),
            ),
        ] {
            assert_eq!(
                pass_through(&requested),
                TokenSource::PassThrough { selector }
            );
        }
    }
}
