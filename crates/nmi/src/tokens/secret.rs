//! What a service principal's Secret holds, read deterministically.
//!
//! Upstream took the client secret from whichever `.data` entry Go's map iteration gave first
//! (random with several keys). Here: `clientSecret` when present, else the first key in sorted
//! order, which is the same whenever upstream was predictable (one key, or `clientSecret`).
//! A certificate is `.data.certificate` (PKCS#12) with its password in `.data.password`
//! (absent means empty, as upstream read it).

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use secrecy::SecretString;

pub const CLIENT_SECRET_KEY: &str = "clientSecret";
pub const CERTIFICATE_KEY: &str = "certificate";
pub const PASSWORD_KEY: &str = "password";

/// Why a Secret's content cannot be used. Values never appear in the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretProblem {
    #[error("it has no data")]
    Empty,
    #[error("its key {0} is empty")]
    EmptyValue(String),
    #[error("its key {0} is not UTF-8 text")]
    NotText(String),
    #[error("it has no key {CERTIFICATE_KEY}")]
    NoCertificate,
}

/// The client secret of a type-1 identity.
pub fn client_secret(data: &BTreeMap<String, ByteString>) -> Result<SecretString, SecretProblem> {
    let (key, value) = data
        .get_key_value(CLIENT_SECRET_KEY)
        .or_else(|| data.iter().next())
        .ok_or(SecretProblem::Empty)?;
    let text = std::str::from_utf8(&value.0).map_err(|_| SecretProblem::NotText(key.clone()))?;
    if text.is_empty() {
        return Err(SecretProblem::EmptyValue(key.clone()));
    }
    Ok(SecretString::from(text))
}

/// The PKCS#12 bytes and password of a type-2 identity.
pub fn certificate(
    data: &BTreeMap<String, ByteString>,
) -> Result<(&[u8], SecretString), SecretProblem> {
    let bytes = data
        .get(CERTIFICATE_KEY)
        .ok_or(SecretProblem::NoCertificate)?;
    if bytes.0.is_empty() {
        return Err(SecretProblem::EmptyValue(CERTIFICATE_KEY.to_owned()));
    }
    let password = match data.get(PASSWORD_KEY) {
        Some(value) => std::str::from_utf8(&value.0)
            .map_err(|_| SecretProblem::NotText(PASSWORD_KEY.to_owned()))?,
        None => "",
    };
    Ok((&bytes.0, SecretString::from(password)))
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    fn data(pairs: &[(&str, &[u8])]) -> BTreeMap<String, ByteString> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), ByteString(v.to_vec())))
            .collect()
    }

    #[test]
    fn the_client_secret_key_wins_else_the_first_key() {
        let both = data(&[("a", b"first"), (CLIENT_SECRET_KEY, b"documented")]);
        assert_eq!(client_secret(&both).unwrap().expose_secret(), "documented");
        let others = data(&[("zeta", b"z"), ("alpha", b"a")]);
        assert_eq!(client_secret(&others).unwrap().expose_secret(), "a");
        assert_eq!(client_secret(&data(&[])).unwrap_err(), SecretProblem::Empty);
        assert_eq!(
            client_secret(&data(&[(CLIENT_SECRET_KEY, b"")])).unwrap_err(),
            SecretProblem::EmptyValue(CLIENT_SECRET_KEY.into())
        );
        assert_eq!(
            client_secret(&data(&[(CLIENT_SECRET_KEY, b"\xff")])).unwrap_err(),
            SecretProblem::NotText(CLIENT_SECRET_KEY.into())
        );
    }

    #[test]
    fn a_certificate_needs_its_key_and_the_password_defaults_to_empty() {
        let only_certificate = data(&[(CERTIFICATE_KEY, b"pfx")]);
        let (bytes, password) = certificate(&only_certificate).unwrap();
        assert_eq!((bytes, password.expose_secret()), (&b"pfx"[..], ""));
        let with_password = data(&[(CERTIFICATE_KEY, b"pfx"), (PASSWORD_KEY, b"pw")]);
        let (_, password) = certificate(&with_password).unwrap();
        assert_eq!(password.expose_secret(), "pw");
        assert_eq!(
            certificate(&data(&[(CLIENT_SECRET_KEY, b"x")])).unwrap_err(),
            SecretProblem::NoCertificate
        );
    }
}
