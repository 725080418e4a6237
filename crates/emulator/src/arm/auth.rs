//! ARM authentication: the bearer token must be ours, current, for ARM, and from the
//! subscription's tenant (azure-wire.md §3.1, §3.7).

use axum::http::{HeaderMap, StatusCode};

use super::error::ArmError;
use crate::tokens::{TokenError, TokenIssuer};

/// Who is calling: the token's `oid` and client (application) ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub object_id: String,
    pub client_id: String,
}

const ARM_AUDIENCES: [&str; 2] = [
    "https://management.azure.com",
    "https://management.core.windows.net",
];

/// Whether ARM accepts a token for `audience`: the public ARM audiences or the emulator's own
/// base URL (go-autorest asks for `resourceManagerEndpoint` of a custom cloud), each with or
/// without the trailing slash.
pub fn audience_accepted(audience: &str, own_base_url: &str) -> bool {
    let audience = audience.strip_suffix('/').unwrap_or(audience);
    let own = own_base_url.trim_end_matches('/');
    ARM_AUDIENCES
        .iter()
        .any(|a| a.eq_ignore_ascii_case(audience))
        || (!own.is_empty() && own.eq_ignore_ascii_case(audience))
}

pub struct AuthContext<'a> {
    pub tokens: &'a TokenIssuer,
    pub now: i64,
    /// The subscription's tenant.
    pub tenant_id: &'a str,
    /// Entra ID authority host, for `WWW-Authenticate` and the wrong-tenant message.
    pub authority: &'a str,
    pub own_base_url: &'a str,
}

pub fn authenticate(headers: &HeaderMap, ctx: &AuthContext<'_>) -> Result<Caller, ArmError> {
    let unauthorized = |code: &str, message: String, description: &str| {
        ArmError::new(StatusCode::UNAUTHORIZED, code, message).with_header(
            "www-authenticate",
            format!(
                "Bearer authorization_uri=\"{}/{}\", error=\"invalid_token\", error_description=\"{description}\"",
                ctx.authority, ctx.tenant_id
            ),
        )
    };
    let Some(value) = headers.get(axum::http::header::AUTHORIZATION) else {
        return Err(unauthorized(
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is missing.".into(),
            "The authentication failed because of missing 'Authorization' header.",
        ));
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .ok_or_else(|| {
            unauthorized(
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is provided in an invalid format."
                    .into(),
                "The authentication failed because the 'Authorization' header is not 'Bearer <token>'.",
            )
        })?;
    let claims = ctx.tokens.verify(token, ctx.now).map_err(|e| match e {
        TokenError::Expired { expired_at } => unauthorized(
            "ExpiredAuthenticationToken",
            format!(
                "The access token expiry UTC time '{}' is earlier than current UTC time '{}'.",
                utc_text(expired_at),
                utc_text(ctx.now)
            ),
            "The access token has expired.",
        ),
        other => unauthorized(
            "InvalidAuthenticationToken",
            "The access token is invalid.".into(),
            &format!("The access token is not valid: {other}."),
        ),
    })?;
    if !audience_accepted(&claims.aud, ctx.own_base_url) {
        return Err(unauthorized(
            "InvalidAuthenticationTokenAudience",
            format!(
                "The access token has been obtained for wrong audience or resource '{}'. It should \
                 exactly match with one of the allowed audiences \
                 'https://management.core.windows.net/','https://management.core.windows.net',\
                 'https://management.azure.com/','https://management.azure.com','{}/','{}'.",
                claims.aud, ctx.own_base_url, ctx.own_base_url
            ),
            "The access token has been obtained for the wrong audience.",
        ));
    }
    if !claims.tid.eq_ignore_ascii_case(ctx.tenant_id) {
        return Err(unauthorized(
            "InvalidAuthenticationTokenTenant",
            format!(
                "The access token is from the wrong issuer '{}'. It must match the tenant \
                 'https://sts.windows.net/{}/' associated with this subscription. Please use the \
                 authority (URL) '{}/{}' to get the token. Note, if the subscription is transferred \
                 to another tenant there is no impact to the services, but information about new \
                 tenant could take time to propagate (up to an hour). If you just transferred your \
                 subscription and see this error message, please try back later.",
                claims.iss, ctx.tenant_id, ctx.authority, ctx.tenant_id
            ),
            "The access token is from the wrong tenant.",
        ));
    }
    Ok(Caller {
        client_id: claims.client_id().to_string(),
        object_id: claims.oid,
    })
}

/// ARM's US-style UTC text: `1/1/2026 12:00:00 AM`.
fn utc_text(unix: i64) -> String {
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp(unix) else {
        return unix.to_string();
    };
    let (hour, half) = match t.hour() {
        0 => (12, "AM"),
        h @ 1..=11 => (h, "AM"),
        12 => (12, "PM"),
        h => (h - 12, "PM"),
    };
    format!(
        "{}/{}/{} {hour}:{:02}:{:02} {half}",
        u8::from(t.month()),
        t.day(),
        t.year(),
        t.minute(),
        t.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audiences_match_with_or_without_the_slash() {
        let own = "https://127.0.0.1:8443";
        for aud in [
            "https://management.azure.com/",
            "https://management.azure.com",
            "https://management.core.windows.net/",
            "https://MANAGEMENT.core.windows.net",
            "https://127.0.0.1:8443/",
            "https://127.0.0.1:8443",
        ] {
            assert!(audience_accepted(aud, own), "{aud}");
        }
        assert!(!audience_accepted("https://vault.azure.net", own));
        assert!(!audience_accepted("https://management.azure.com//", own));
        assert!(!audience_accepted("", ""));
    }

    #[test]
    fn utc_text_uses_arms_twelve_hour_form() {
        assert_eq!(utc_text(1_767_225_600), "1/1/2026 12:00:00 AM");
        assert_eq!(
            utc_text(1_767_225_600 + 13 * 3600 + 65),
            "1/1/2026 1:01:05 PM"
        );
    }
}
