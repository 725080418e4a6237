//! A client certificate from PKCS#12 bytes, and the client-assertion JWT it signs.
//!
//! PKCS#12 is read with `p12-keystore` (pure Rust, legacy RC2/3DES stores too, which is what
//! Go's `pkcs12` package and `openssl -legacy` write); the RSA key signs with aws-lc-rs.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{KeyPair, RSA_PKCS1_SHA256, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use sha1::{Digest, Sha1};

/// How long an assertion is valid. Entra ID needs it only for the one token request.
const ASSERTION_LIFETIME: Duration = Duration::from_secs(600);

/// A certificate and its RSA private key.
pub struct ClientCertificate {
    key: RsaKeyPair,
    certificate_der: Vec<u8>,
    thumbprint: String,
}

/// Why a certificate could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    /// Wrong password, corrupt data, or an encryption scheme that is not supported.
    #[error("the PKCS#12 data cannot be read: {0}")]
    Pkcs12(String),
    #[error("the PKCS#12 data holds no private key")]
    NoPrivateKey,
    #[error("the private key is not an RSA key: {0}")]
    NotRsa(String),
    #[error("the PKCS#12 data holds no certificate for its private key")]
    NoMatchingCertificate,
    #[error("signing the client assertion failed")]
    Signing,
}

impl ClientCertificate {
    /// Reads PKCS#12 (`.pfx`/`.p12`) bytes: the first private key, and the certificate whose
    /// public key is that key's (the order and `localKeyId` of the bags do not matter).
    pub fn from_pkcs12(bytes: &[u8], password: &str) -> Result<Self, CertificateError> {
        let archive = p12_keystore::Pkcs12Archive::from_pkcs12(bytes, password)
            .map_err(|e| CertificateError::Pkcs12(e.to_string()))?;
        let key_bag = archive.keys.first().ok_or(CertificateError::NoPrivateKey)?;
        let key = RsaKeyPair::from_pkcs8(key_bag.key.as_der())
            .map_err(|e| CertificateError::NotRsa(e.to_string()))?;
        let public = key.public_key().as_ref();
        let certificate_der = archive
            .certs
            .iter()
            .map(|bag| bag.cert.as_der())
            .find(|der| certificate_public_key(der).is_some_and(|k| k == public))
            .ok_or(CertificateError::NoMatchingCertificate)?
            .to_vec();
        let thumbprint = URL_SAFE_NO_PAD.encode(Sha1::digest(&certificate_der));
        Ok(Self {
            key,
            certificate_der,
            thumbprint,
        })
    }

    /// `x5t`: the base64url SHA-1 thumbprint of the certificate.
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    /// The certificate, DER.
    pub fn certificate_der(&self) -> &[u8] {
        &self.certificate_der
    }

    /// A client assertion for `client_id` at the token endpoint `audience`, valid from `now`
    /// for ten minutes: RS256 with `x5t` and `x5c` (the certificate, for subject-name/issuer
    /// authentication).
    pub fn assertion(
        &self,
        client_id: &str,
        audience: &str,
        now: SystemTime,
        jti: &str,
    ) -> Result<String, CertificateError> {
        let issued = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let header = serde_json::json!({
            "alg": "RS256",
            "typ": "JWT",
            "x5t": self.thumbprint,
            "x5c": [STANDARD.encode(&self.certificate_der)],
        });
        let claims = serde_json::json!({
            "aud": audience,
            "iss": client_id,
            "sub": client_id,
            "jti": jti,
            "iat": issued,
            "nbf": issued,
            "exp": issued + ASSERTION_LIFETIME.as_secs(),
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut signature = vec![0u8; self.key.public_modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                signing_input.as_bytes(),
                &mut signature,
            )
            .map_err(|_| CertificateError::Signing)?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature)
        ))
    }
}

/// The subjectPublicKey bits of a certificate (for RSA, the PKCS#1 public key aws-lc-rs shows).
fn certificate_public_key(der: &[u8]) -> Option<Vec<u8>> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(cert.public_key().subject_public_key.data.to_vec())
}

impl fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCertificate")
            .field("thumbprint", &self.thumbprint)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::signature::{RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
    use serde_json::Value;

    const MODERN: &[u8] = include_bytes!("../../tests/fixtures/seed-sp.p12");
    const LEGACY: &[u8] = include_bytes!("../../tests/fixtures/seed-sp-legacy.p12");
    const PASSWORD: &str = "podid-test";
    /// SHA-1 of the fixture certificate (`openssl x509 -fingerprint`), base64url.
    const THUMBPRINT_HEX: &str = "8F34E47D76187B471F4645A96541AFC6E9088506";

    fn decode(segment: &str) -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segment).unwrap()).unwrap()
    }

    fn hex_to_base64url(hex: &str) -> String {
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        URL_SAFE_NO_PAD.encode(bytes)
    }

    #[test]
    fn modern_and_legacy_stores_give_the_same_certificate() {
        let modern = ClientCertificate::from_pkcs12(MODERN, PASSWORD).unwrap();
        let legacy = ClientCertificate::from_pkcs12(LEGACY, PASSWORD).unwrap();
        assert_eq!(modern.thumbprint(), hex_to_base64url(THUMBPRINT_HEX));
        assert_eq!(modern.thumbprint(), legacy.thumbprint());
        assert_eq!(modern.certificate_der(), legacy.certificate_der());
    }

    #[test]
    fn a_wrong_password_is_a_pkcs12_error() {
        assert!(matches!(
            ClientCertificate::from_pkcs12(MODERN, "wrong"),
            Err(CertificateError::Pkcs12(_))
        ));
        assert!(matches!(
            ClientCertificate::from_pkcs12(b"not pkcs12", PASSWORD),
            Err(CertificateError::Pkcs12(_))
        ));
    }

    #[test]
    fn the_assertion_is_a_verifiable_rs256_jwt_with_x5t_and_x5c() {
        let cert = ClientCertificate::from_pkcs12(MODERN, PASSWORD).unwrap();
        let now = UNIX_EPOCH + Duration::from_secs(1_767_225_600);
        let aud = "https://127.0.0.1:1/t/oauth2/token?api-version=1.0";
        let jwt = cert.assertion("client-1", aud, now, "jti-1").unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);

        let header = decode(parts[0]);
        assert_eq!(header["alg"], "RS256");
        assert_eq!(header["typ"], "JWT");
        assert_eq!(header["x5t"], cert.thumbprint());
        assert_eq!(
            STANDARD.decode(header["x5c"][0].as_str().unwrap()).unwrap(),
            cert.certificate_der()
        );

        let claims = decode(parts[1]);
        assert_eq!(claims["aud"], aud);
        assert_eq!(claims["iss"], "client-1");
        assert_eq!(claims["sub"], "client-1");
        assert_eq!(claims["jti"], "jti-1");
        assert_eq!(claims["nbf"], 1_767_225_600u64);
        assert_eq!(claims["iat"], 1_767_225_600u64);
        assert_eq!(claims["exp"], 1_767_225_600u64 + 600);

        let public = certificate_public_key(cert.certificate_der()).unwrap();
        let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        let signed = format!("{}.{}", parts[0], parts[1]);
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &public)
            .verify(signed.as_bytes(), &signature)
            .expect("the certificate's key verifies the assertion");
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &public)
            .verify(b"something else", &signature)
            .expect_err("the signature covers the header and claims");
    }

    #[test]
    fn debug_shows_the_thumbprint_only() {
        let cert = ClientCertificate::from_pkcs12(MODERN, PASSWORD).unwrap();
        let debug = format!("{cert:?}");
        assert!(debug.contains(cert.thumbprint()), "{debug}");
        assert!(!debug.contains("key"), "{debug}");
    }
}
