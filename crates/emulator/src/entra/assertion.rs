//! Client-assertion validation (azure-wire.md §2.3): a JWT the app signed with the key of a
//! certificate it registered. RS256 (located by `x5t`, SHA-1) and PS256 (by `x5t#S256`,
//! SHA-256) are accepted; thumbprints may carry `=` padding; `exp`/`nbf` may be floats and `nbf`
//! may be absent; `aud` is the tenant's v1 or v2 token endpoint on this host, query ignored.

use aws_lc_rs::signature::{
    RSA_PKCS1_2048_8192_SHA256, RSA_PSS_2048_8192_SHA256, RsaParameters, RsaPublicKeyComponents,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::Value;
use sha1::Digest;

use super::aadsts::{AadError, Aadsts};
use crate::tokens::rsa_public_numbers;

/// What an assertion is checked against.
#[derive(Debug)]
pub struct AssertionCheck<'a> {
    pub client_id: &'a str,
    /// The tenant GUID the token is requested in.
    pub tenant_id: &'a str,
    /// `host:port` forms (see [`normalize_authority`]) this emulator is reached at.
    pub authorities: &'a [String],
    /// DER of the app's registered certificates.
    pub certificates: &'a [Vec<u8>],
    pub now: i64,
    pub skew_secs: i64,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    x5t: Option<String>,
    #[serde(default, rename = "x5t#S256")]
    x5t_s256: Option<String>,
}

/// Checks, in AAD's order: shape, key, signature, `iss`/`sub`, `aud`, validity window.
pub fn validate(assertion: &str, check: &AssertionCheck<'_>) -> Result<(), AadError> {
    let parts: Vec<&str> = assertion.split('.').collect();
    let [header_b64, claims_b64, signature_b64] = parts.as_slice() else {
        return Err(malformed(
            "it must be three base64url parts separated by '.'",
        ));
    };
    let header: Header = serde_json::from_slice(&decode_b64url(header_b64, "header")?)
        .map_err(|e| malformed(&format!("the header is not a JSON object with 'alg': {e}")))?;
    let claims: Value = serde_json::from_slice(&decode_b64url(claims_b64, "payload")?)
        .map_err(|e| malformed(&format!("the payload is not JSON: {e}")))?;
    let signature = decode_b64url(signature_b64, "signature")?;
    let params: &RsaParameters = match header.alg.as_str() {
        "RS256" => &RSA_PKCS1_2048_8192_SHA256,
        "PS256" => &RSA_PSS_2048_8192_SHA256,
        other => {
            return Err(malformed(&format!(
                "'{other}' is not a supported signature algorithm; use RS256 (with x5t) or \
                 PS256 (with x5t#S256)"
            )));
        }
    };

    let thumbprint = header
        .x5t_s256
        .as_deref()
        .or(header.x5t.as_deref())
        .unwrap_or("none: the header has neither x5t nor x5t#S256");
    let certificate = find_certificate(&header, check.certificates)
        .ok_or_else(|| signature_error("The key was not found", thumbprint))?;
    let (n, e) = rsa_public_numbers(certificate).map_err(|_| {
        signature_error(
            "The registered certificate does not hold an RSA key",
            thumbprint,
        )
    })?;
    let signed = &assertion[..header_b64.len() + 1 + claims_b64.len()];
    RsaPublicKeyComponents { n: &n, e: &e }
        .verify(params, signed.as_bytes(), &signature)
        .map_err(|_| {
            signature_error(
                "The provided signature value did not match the expected signature value",
                thumbprint,
            )
        })?;

    let claim_str = |name: &str| claims.get(name).and_then(Value::as_str).unwrap_or_default();
    let (iss, sub) = (claim_str("iss"), claim_str("sub"));
    if !iss.eq_ignore_ascii_case(check.client_id) || !sub.eq_ignore_ascii_case(check.client_id) {
        let reason = format!(
            "iss is '{iss}' and sub is '{sub}'; both must be '{}'",
            check.client_id
        );
        return Err(AadError::new(
            Aadsts::AssertionSubjectMismatch,
            &[("reason", &reason)],
        ));
    }

    check_audience(claims.get("aud"), check)?;
    check_time_range(&claims, check)
}

fn check_audience(aud: Option<&Value>, check: &AssertionCheck<'_>) -> Result<(), AadError> {
    let audiences: Vec<&str> = match aud {
        Some(Value::String(a)) => vec![a.as_str()],
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if audiences
        .iter()
        .any(|a| audience_matches(a, check.tenant_id, check.authorities))
    {
        return Ok(());
    }
    let authority = check
        .authorities
        .first()
        .map_or("<this host>", String::as_str);
    let expected = format!(
        "https://{authority}/{tenant}/oauth2/v2.0/token or https://{authority}/{tenant}/oauth2/token",
        tenant = check.tenant_id
    );
    Err(AadError::new(
        Aadsts::AssertionAudienceMismatch,
        &[("audience", &audiences.join(" ")), ("expected", &expected)],
    ))
}

fn check_time_range(claims: &Value, check: &AssertionCheck<'_>) -> Result<(), AadError> {
    let exp = claims
        .get("exp")
        .and_then(Value::as_f64)
        .ok_or_else(|| malformed("the 'exp' claim is missing or not a number"))?;
    let nbf = match claims.get("nbf") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_f64()
                .ok_or_else(|| malformed("the 'nbf' claim is not a number"))?,
        ),
    };
    let now = check.now as f64;
    let skew = check.skew_secs as f64;
    let expired = exp + skew <= now;
    let early = nbf.is_some_and(|nbf| nbf > now + skew);
    if !expired && !early {
        return Ok(());
    }
    Err(AadError::new(
        Aadsts::AssertionTimeRange,
        &[
            ("now", &assertion_time(now)),
            (
                "nbf",
                &nbf.map_or_else(|| "(no nbf)".to_string(), assertion_time),
            ),
            ("exp", &assertion_time(exp)),
        ],
    ))
}

/// Whether `aud` is the v1 or v2 token endpoint of `tenant_id` on one of `authorities`; the
/// query string and a trailing slash are ignored, case is not significant.
pub fn audience_matches(aud: &str, tenant_id: &str, authorities: &[String]) -> bool {
    let Ok(url) = url::Url::parse(aud) else {
        return false;
    };
    if url.scheme() != "https" {
        return false;
    }
    let Some(authority) = url_authority(&url) else {
        return false;
    };
    if !authorities.contains(&authority) {
        return false;
    }
    let path = url.path().trim_end_matches('/');
    [
        format!("/{tenant_id}/oauth2/token"),
        format!("/{tenant_id}/oauth2/v2.0/token"),
    ]
    .iter()
    .any(|p| p.eq_ignore_ascii_case(path))
}

/// `host:port` (host lower-case, default port filled in) of an authority as a client writes it
/// (`127.0.0.1:8444`, `LOCALHOST`), or `None` if it is not one.
pub fn normalize_authority(authority: &str) -> Option<String> {
    url::Url::parse(&format!("https://{authority}/"))
        .ok()
        .and_then(|u| url_authority(&u))
}

fn url_authority(url: &url::Url) -> Option<String> {
    let host = url.host_str()?.to_ascii_lowercase();
    let port = url.port_or_known_default()?;
    Some(format!("{host}:{port}"))
}

fn find_certificate<'c>(header: &Header, certificates: &'c [Vec<u8>]) -> Option<&'c Vec<u8>> {
    let sha1 = header.x5t.as_deref().and_then(thumbprint_bytes);
    let sha256 = header.x5t_s256.as_deref().and_then(thumbprint_bytes);
    certificates.iter().find(|der| {
        sha256
            .as_ref()
            .is_some_and(|t| t.as_slice() == sha2::Sha256::digest(der).as_slice())
            || sha1
                .as_ref()
                .is_some_and(|t| t.as_slice() == sha1::Sha1::digest(der).as_slice())
    })
}

/// A base64url thumbprint, padded (adal, MSAL) or not.
fn thumbprint_bytes(value: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(value.trim_end_matches('=')).ok()
}

fn decode_b64url(part: &str, what: &str) -> Result<Vec<u8>, AadError> {
    URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|e| malformed(&format!("the {what} is not base64url: {e}")))
}

fn malformed(reason: &str) -> AadError {
    AadError::new(Aadsts::MalformedAssertion, &[("reason", reason)])
}

fn signature_error(reason: &str, thumbprint: &str) -> AadError {
    AadError::new(
        Aadsts::AssertionSignature,
        &[("reason", reason), ("thumbprint", thumbprint)],
    )
}

/// The `2026-01-01T00:00:00.0000000Z` form AADSTS700024 quotes times in.
fn assertion_time(unix: f64) -> String {
    let whole = unix.floor() as i64;
    match time::OffsetDateTime::from_unix_timestamp(whole) {
        Ok(dt) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.0000000Z",
            dt.year(),
            u8::from(dt.month()),
            dt.day(),
            dt.hour(),
            dt.minute(),
            dt.second()
        ),
        Err(_) => format!("{unix} (out of range)"),
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{Algorithm, EncodingKey, Header as JwtHeader};
    use serde_json::json;

    use super::*;

    const CLIENT: &str = "6d3b1e5c-0a7e-4f3c-9b1d-2c4e5f6a7b8c";
    const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
    const NOW: i64 = 1_767_225_600;

    struct Cert {
        der: Vec<u8>,
        key: EncodingKey,
    }

    fn cert() -> Cert {
        let key_pair =
            rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).expect("rsa key generation");
        let params = rcgen::CertificateParams::new(vec!["app".to_string()]).expect("params");
        let cert = params.self_signed(&key_pair).expect("self-signed");
        Cert {
            der: cert.der().to_vec(),
            key: EncodingKey::from_rsa_pem(key_pair.serialize_pem().as_bytes()).expect("pem"),
        }
    }

    fn authorities() -> Vec<String> {
        vec![normalize_authority("127.0.0.1:8444").expect("authority")]
    }

    fn claims() -> Value {
        json!({
            "aud": format!("https://127.0.0.1:8444/{TENANT}/oauth2/token?api-version=1.0"),
            "iss": CLIENT, "sub": CLIENT, "jti": "j", "nbf": NOW - 10, "exp": NOW + 600,
        })
    }

    fn sign(cert: &Cert, alg: Algorithm, claims: &Value) -> String {
        let mut header = JwtHeader::new(alg);
        if alg == Algorithm::PS256 {
            header.x5t_s256 = Some(URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(&cert.der)));
        } else {
            // adal and MSAL send the padded form.
            let sha1 = sha1::Sha1::digest(&cert.der);
            header.x5t = Some(base64::engine::general_purpose::URL_SAFE.encode(sha1));
        }
        jsonwebtoken::encode(&header, claims, &cert.key).expect("signed")
    }

    fn run(assertion: &str, certificates: &[Vec<u8>]) -> Result<(), AadError> {
        let authorities = authorities();
        validate(
            assertion,
            &AssertionCheck {
                client_id: CLIENT,
                tenant_id: TENANT,
                authorities: &authorities,
                certificates,
                now: NOW,
                skew_secs: 300,
            },
        )
    }

    fn code(result: Result<(), AadError>) -> u32 {
        result.expect_err("must be rejected").code
    }

    #[test]
    fn rs256_and_ps256_assertions_with_registered_keys_pass() {
        let c = cert();
        let certs = vec![c.der.clone()];
        run(&sign(&c, Algorithm::RS256, &claims()), &certs).expect("RS256");
        run(&sign(&c, Algorithm::PS256, &claims()), &certs).expect("PS256");
        let mut msal = claims();
        msal["exp"] = json!(NOW as f64 + 600.5);
        msal.as_object_mut().expect("object").remove("nbf");
        msal["aud"] = json!(format!(
            "https://127.0.0.1:8444/{TENANT}/oauth2/v2.0/token/"
        ));
        run(&sign(&c, Algorithm::RS256, &msal), &certs).expect("float exp, no nbf, v2 aud");
    }

    #[test]
    fn unknown_keys_and_tampering_fail_signature_validation() {
        let c = cert();
        let other = cert();
        let token = sign(&c, Algorithm::RS256, &claims());
        assert_eq!(code(run(&token, std::slice::from_ref(&other.der))), 700027);
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(json!({"iss": CLIENT}).to_string());
        parts[1] = &forged;
        assert_eq!(
            code(run(&parts.join("."), std::slice::from_ref(&c.der))),
            700027
        );
    }

    #[test]
    fn subject_audience_and_time_are_checked() {
        let c = cert();
        let certs = vec![c.der.clone()];
        let with = |k: &str, v: Value| {
            let mut cl = claims();
            cl[k] = v;
            sign(&c, Algorithm::RS256, &cl)
        };
        assert_eq!(
            code(run(&with("iss", json!("someone-else")), &certs)),
            700021
        );
        assert_eq!(
            code(run(&with("sub", json!("someone-else")), &certs)),
            700021
        );
        let wrong_tenant = format!("https://127.0.0.1:8444/{CLIENT}/oauth2/token");
        assert_eq!(code(run(&with("aud", json!(wrong_tenant)), &certs)), 700023);
        let wrong_host = format!("https://login.microsoftonline.com/{TENANT}/oauth2/token");
        assert_eq!(code(run(&with("aud", json!(wrong_host)), &certs)), 700023);
        let err = run(&with("exp", json!(NOW - 301)), &certs).expect_err("expired");
        assert_eq!(err.code, 700024);
        assert!(
            err.description.contains("not within its valid time range"),
            "{err:?}"
        );
        run(&with("exp", json!(NOW - 299)), &certs).expect("within the skew");
        assert_eq!(code(run(&with("nbf", json!(NOW + 301)), &certs)), 700024);
        assert_eq!(code(run(&with("exp", json!("soon")), &certs)), 50027);
    }

    #[test]
    fn malformed_assertions_name_the_problem() {
        let err = run("abc", &[]).expect_err("malformed");
        assert_eq!(err.code, 50027);
        assert!(err.description.contains("three base64url parts"));
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256"}"#);
        let err = run(&format!("{header}.e30.c2ln"), &[]).expect_err("alg");
        assert!(
            err.description.contains("'HS256' is not a supported"),
            "{err:?}"
        );
    }

    #[test]
    fn authorities_normalize_host_case_and_default_port() {
        assert_eq!(
            normalize_authority("LocalHost").as_deref(),
            Some("localhost:443")
        );
        assert!(audience_matches(
            &format!("https://LOCALHOST/{TENANT}/OAUTH2/token"),
            TENANT,
            &[normalize_authority("localhost:443").expect("ok")]
        ));
        assert!(!audience_matches(
            &format!("http://localhost/{TENANT}/oauth2/token"),
            TENANT,
            &[normalize_authority("localhost").expect("ok")]
        ));
    }
}
