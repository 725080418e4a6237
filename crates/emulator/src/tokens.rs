//! Access tokens: RS256 JWTs signed with one key per tenant, published as JWKS, with the claims
//! real Entra ID tokens carry (docs/azure-wire.md §2.6). ARM verifies the tokens it is handed
//! with [`TokenIssuer::verify`].

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha1::Digest;

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("generating a signing key failed: {0}")]
    KeyGeneration(String),
    #[error("tenant {0} has no signing key")]
    UnknownTenant(String),
    #[error("signing the token failed: {0}")]
    Sign(String),
    #[error("the token is malformed: {0}")]
    Malformed(String),
    #[error("the token signature is not valid")]
    BadSignature,
    #[error("the token expired at {expired_at}")]
    Expired { expired_at: i64 },
    #[error("the token is not valid before {not_before}")]
    NotYetValid { not_before: i64 },
}

/// Who the token is for.
#[derive(Debug, Clone)]
pub enum Subject {
    /// A managed identity; `mirid` is the identity's ARM ID (UAMI) or the VM/VMSS ID (system
    /// assigned), `az_rid` the compute resource that asked.
    ManagedIdentity { mirid: String, az_rid: String },
    /// An app with a secret (`appidacr` 1) or certificate (`appidacr` 2).
    ServicePrincipal { certificate: bool },
}

#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub tenant_id: String,
    /// The audience, exactly as requested.
    pub resource: String,
    pub client_id: String,
    pub object_id: String,
    pub subject: Subject,
    /// 1 or 2: the token format the resource accepts.
    pub version: u8,
    pub lifetime_secs: i64,
}

#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub access_token: String,
    pub not_before: i64,
    pub expires_on: i64,
}

/// The claims [`TokenIssuer::verify`] hands back.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub aud: String,
    pub iss: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub tid: String,
    pub oid: String,
    pub sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub appid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azp: Option<String>,
    pub ver: String,
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

impl Claims {
    /// The client (application) ID, from `appid` (v1) or `azp` (v2).
    pub fn client_id(&self) -> &str {
        self.appid
            .as_deref()
            .or(self.azp.as_deref())
            .unwrap_or_default()
    }
}

struct TenantKey {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    jwk: serde_json::Value,
}

pub struct TokenIssuer {
    /// Keyed by lower-case tenant ID.
    tenants: BTreeMap<String, TenantKey>,
}

/// AAD backdates `iat`/`nbf` by five minutes to absorb clock skew.
const BACKDATE_SECS: i64 = 300;
/// Skew tolerated when verifying `exp`/`nbf`.
const VERIFY_SKEW_SECS: i64 = 300;

impl TokenIssuer {
    pub fn new<'a>(tenant_ids: impl IntoIterator<Item = &'a str>) -> Result<Self, TokenError> {
        let mut tenants = BTreeMap::new();
        for tenant in tenant_ids {
            tenants.insert(tenant.to_ascii_lowercase(), TenantKey::generate(tenant)?);
        }
        Ok(Self { tenants })
    }

    pub fn has_tenant(&self, tenant_id: &str) -> bool {
        self.tenants.contains_key(&tenant_id.to_ascii_lowercase())
    }

    /// The JWKS document of a tenant (`/{tenant}/discovery/v2.0/keys`).
    pub fn jwks(&self, tenant_id: &str) -> Result<serde_json::Value, TokenError> {
        let key = self.key(tenant_id)?;
        Ok(serde_json::json!({ "keys": [key.jwk] }))
    }

    pub fn issue(&self, req: &TokenRequest, now: i64) -> Result<IssuedToken, TokenError> {
        let key = self.key(&req.tenant_id)?;
        let tid = &req.tenant_id;
        let nbf = now - BACKDATE_SECS;
        let exp = now + req.lifetime_secs;
        let mut claims = serde_json::Map::new();
        let mut put = |k: &str, v: serde_json::Value| {
            claims.insert(k.to_string(), v);
        };
        put("aud", req.resource.clone().into());
        put("iat", nbf.into());
        put("nbf", nbf.into());
        put("exp", exp.into());
        put("aio", opaque().into());
        put("idtyp", "app".into());
        put("oid", req.object_id.clone().into());
        put("sub", req.object_id.clone().into());
        put("tid", tid.clone().into());
        put("rh", opaque().into());
        put("uti", opaque().into());
        let acr = match req.subject {
            Subject::ServicePrincipal { certificate: false } => "1",
            _ => "2",
        };
        if req.version == 2 {
            put(
                "iss",
                format!("https://login.microsoftonline.com/{tid}/v2.0").into(),
            );
            put("azp", req.client_id.clone().into());
            put("azpacr", acr.into());
            put("ver", "2.0".into());
        } else {
            put("iss", format!("https://sts.windows.net/{tid}/").into());
            put("idp", format!("https://sts.windows.net/{tid}/").into());
            put("appid", req.client_id.clone().into());
            put("appidacr", acr.into());
            put("ver", "1.0".into());
        }
        if let Subject::ManagedIdentity { mirid, az_rid } = &req.subject {
            put("xms_mirid", mirid.clone().into());
            put("xms_az_rid", az_rid.clone().into());
        }
        let mut header = Header::new(Algorithm::RS256);
        header.typ = Some("JWT".into());
        header.kid = Some(key.kid.clone());
        header.x5t = Some(key.kid.clone());
        let access_token = jsonwebtoken::encode(&header, &claims, &key.encoding)
            .map_err(|e| TokenError::Sign(e.to_string()))?;
        Ok(IssuedToken {
            access_token,
            not_before: nbf,
            expires_on: exp,
        })
    }

    /// Checks signature (by `kid`), `exp` and `nbf` against `now`, and returns the claims.
    /// Audience and tenant are the caller's to check.
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, TokenError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| TokenError::Malformed(e.to_string()))?;
        let kid = header
            .kid
            .ok_or_else(|| TokenError::Malformed("no kid in the header".into()))?;
        let key = self
            .tenants
            .values()
            .find(|k| k.kid == kid)
            .ok_or(TokenError::BadSignature)?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let data = jsonwebtoken::decode::<Claims>(token, &key.decoding, &validation).map_err(
            |e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => TokenError::BadSignature,
                _ => TokenError::Malformed(e.to_string()),
            },
        )?;
        let claims = data.claims;
        if claims.exp + VERIFY_SKEW_SECS < now {
            return Err(TokenError::Expired {
                expired_at: claims.exp,
            });
        }
        if claims.nbf - VERIFY_SKEW_SECS > now {
            return Err(TokenError::NotYetValid {
                not_before: claims.nbf,
            });
        }
        Ok(claims)
    }

    fn key(&self, tenant_id: &str) -> Result<&TenantKey, TokenError> {
        self.tenants
            .get(&tenant_id.to_ascii_lowercase())
            .ok_or_else(|| TokenError::UnknownTenant(tenant_id.to_string()))
    }
}

impl TenantKey {
    fn generate(tenant_id: &str) -> Result<Self, TokenError> {
        let gen_err = |e: rcgen::Error| TokenError::KeyGeneration(e.to_string());
        let key_pair =
            rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
                .map_err(gen_err)?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(gen_err)?;
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            format!("login.emulator/{tenant_id}"),
        );
        let cert = params.self_signed(&key_pair).map_err(gen_err)?;
        let der = cert.der().to_vec();
        let kid = URL_SAFE_NO_PAD.encode(sha1::Sha1::digest(&der));
        let (n, e) = rsa_public_numbers(&der)?;
        let encoding = EncodingKey::from_rsa_pem(key_pair.serialize_pem().as_bytes())
            .map_err(|e| TokenError::KeyGeneration(e.to_string()))?;
        let decoding = DecodingKey::from_rsa_raw_components(&n, &e);
        let jwk = serde_json::json!({
            "kty": "RSA",
            "use": "sig",
            "kid": kid,
            "x5t": kid,
            "n": URL_SAFE_NO_PAD.encode(&n),
            "e": URL_SAFE_NO_PAD.encode(&e),
            "x5c": [STANDARD.encode(&der)],
            "issuer": format!("https://login.microsoftonline.com/{tenant_id}/v2.0"),
        });
        Ok(Self {
            kid,
            encoding,
            decoding,
            jwk,
        })
    }
}

/// Modulus and exponent (big-endian, no leading zeros) of an RSA certificate's public key.
pub fn rsa_public_numbers(cert_der: &[u8]) -> Result<(Vec<u8>, Vec<u8>), TokenError> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    use x509_parser::public_key::PublicKey;
    let (_, cert) = X509Certificate::from_der(cert_der)
        .map_err(|e| TokenError::Malformed(format!("certificate: {e}")))?;
    match cert.public_key().parsed() {
        Ok(PublicKey::RSA(rsa)) => Ok((
            strip_leading_zeros(rsa.modulus).to_vec(),
            strip_leading_zeros(rsa.exponent).to_vec(),
        )),
        Ok(_) => Err(TokenError::Malformed(
            "the certificate key is not RSA".into(),
        )),
        Err(e) => Err(TokenError::Malformed(format!("certificate key: {e}"))),
    }
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

/// An opaque claim value like AAD's `aio`/`rh`/`uti`.
fn opaque() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";

    fn request(version: u8) -> TokenRequest {
        TokenRequest {
            tenant_id: TENANT.into(),
            resource: "https://management.azure.com/".into(),
            client_id: "cb5569f2-8d09-4de1-a007-e02058e11d15".into(),
            object_id: "0b6c0f5e-0000-4000-8000-000000000001".into(),
            subject: Subject::ManagedIdentity {
                mirid: "/subscriptions/s/resourcegroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/DEMO".into(),
                az_rid: "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachineScaleSets/pool".into(),
            },
            version,
            lifetime_secs: 86399,
        }
    }

    #[test]
    fn issued_tokens_verify_and_carry_the_expected_claims() {
        let issuer = TokenIssuer::new([TENANT]).expect("keys");
        let now = 1_767_225_600;
        let token = issuer.issue(&request(1), now).expect("issued");
        assert_eq!(token.expires_on, now + 86399);
        let claims = issuer.verify(&token.access_token, now).expect("valid");
        assert_eq!(claims.aud, "https://management.azure.com/");
        assert_eq!(claims.iss, format!("https://sts.windows.net/{TENANT}/"));
        assert_eq!(claims.client_id(), "cb5569f2-8d09-4de1-a007-e02058e11d15");
        assert_eq!(claims.exp, token.expires_on);
        assert_eq!(claims.nbf, token.not_before);
        assert!(claims.other.contains_key("xms_mirid"));
        let v2 = issuer.issue(&request(2), now).expect("issued");
        let claims = issuer.verify(&v2.access_token, now).expect("valid");
        assert_eq!(claims.ver, "2.0");
        assert_eq!(claims.client_id(), "cb5569f2-8d09-4de1-a007-e02058e11d15");
    }

    #[test]
    fn expired_tampered_and_foreign_tokens_are_refused() {
        let issuer = TokenIssuer::new([TENANT]).expect("keys");
        let now = 1_767_225_600;
        let token = issuer.issue(&request(1), now).expect("issued").access_token;
        assert!(matches!(
            issuer.verify(&token, now + 90_000),
            Err(TokenError::Expired { .. })
        ));
        let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
        parts[1] = URL_SAFE_NO_PAD.encode(br#"{"aud":"x","iss":"x","iat":0,"nbf":0,"exp":9999999999,"tid":"t","oid":"o","sub":"o","ver":"1.0"}"#);
        assert!(matches!(
            issuer.verify(&parts.join("."), now),
            Err(TokenError::BadSignature)
        ));
        let other = TokenIssuer::new(["00000000-0000-0000-0000-000000000001"]).expect("keys");
        let foreign = other
            .issue(
                &TokenRequest {
                    tenant_id: "00000000-0000-0000-0000-000000000001".into(),
                    ..request(1)
                },
                now,
            )
            .expect("issued");
        assert!(issuer.verify(&foreign.access_token, now).is_err());
        assert!(matches!(
            issuer.verify("not-a-jwt", now),
            Err(TokenError::Malformed(_))
        ));
    }

    #[test]
    fn the_jwks_key_id_is_the_sha1_thumbprint_of_the_published_certificate() {
        let issuer = TokenIssuer::new([TENANT]).expect("keys");
        let jwks = issuer.jwks(TENANT).expect("jwks");
        let key = &jwks["keys"][0];
        let der = STANDARD
            .decode(key["x5c"][0].as_str().expect("x5c"))
            .expect("base64");
        assert_eq!(key["kid"], URL_SAFE_NO_PAD.encode(sha1::Sha1::digest(&der)));
        assert!(issuer.jwks("unknown").is_err());
    }
}
