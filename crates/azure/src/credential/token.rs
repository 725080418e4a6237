//! An access token and the response fields it came with.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::wire::string_or_number;

/// The fields of a token response, as text, exactly as IMDS or Entra ID sent them (IMDS and
/// Entra v1 send every field as a string; Entra v2 sends `expires_in` as a number and has no
/// `expires_on`, `not_before` or `resource`). NMI passes them on unchanged.
#[derive(Clone, Debug, Deserialize)]
pub struct TokenFields {
    pub access_token: SecretString,
    #[serde(default, deserialize_with = "string_or_number")]
    pub client_id: Option<String>,
    #[serde(default, deserialize_with = "string_or_number")]
    pub expires_in: Option<String>,
    #[serde(default, deserialize_with = "string_or_number")]
    pub expires_on: Option<String>,
    #[serde(default, deserialize_with = "string_or_number")]
    pub ext_expires_in: Option<String>,
    #[serde(default, deserialize_with = "string_or_number")]
    pub not_before: Option<String>,
    #[serde(default, deserialize_with = "string_or_number")]
    pub resource: Option<String>,
    #[serde(default, deserialize_with = "string_or_number")]
    pub token_type: Option<String>,
}

/// An access token with its expiry.
#[derive(Clone, Debug)]
pub struct Token {
    fields: TokenFields,
    expires_on: SystemTime,
}

impl Token {
    /// Reads a token response received at `received_at`. The expiry is `expires_on` when it
    /// is Unix seconds, else `received_at + expires_in`; a response with neither, or with an
    /// empty access token, is refused with the reason.
    pub fn from_fields(fields: TokenFields, received_at: SystemTime) -> Result<Self, String> {
        if fields.access_token.expose_secret().is_empty() {
            return Err("access_token is empty".into());
        }
        let seconds =
            |text: &Option<String>| text.as_deref().and_then(|t| t.trim().parse::<u64>().ok());
        // Checked: a number of seconds past what a `SystemTime` holds is refused, not a panic
        // (a crash the azure_wire fuzz target reproduces).
        let expires_on = match (seconds(&fields.expires_on), seconds(&fields.expires_in)) {
            (Some(on), _) => UNIX_EPOCH
                .checked_add(Duration::from_secs(on))
                .ok_or("expires_on is out of range")?,
            (None, Some(within)) => received_at
                .checked_add(Duration::from_secs(within))
                .ok_or("expires_in is out of range")?,
            (None, None) => {
                return Err("neither expires_on nor expires_in is a number of seconds".into());
            }
        };
        Ok(Self { fields, expires_on })
    }

    /// The bearer token itself.
    pub fn access_token(&self) -> &str {
        self.fields.access_token.expose_secret()
    }

    pub fn expires_on(&self) -> SystemTime {
        self.expires_on
    }

    /// The response fields as received.
    pub fn fields(&self) -> &TokenFields {
        &self.fields
    }

    /// Whether the token is still good for `margin` after `now` (callers refresh before a
    /// token runs out, not after).
    pub fn is_fresh(&self, now: SystemTime, margin: Duration) -> bool {
        now + margin < self.expires_on
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(json: &str) -> TokenFields {
        serde_json::from_str(json).unwrap()
    }

    const IMDS: &str = r#"{"access_token":"eyJ.x.y","client_id":"c","expires_in":"86399",
        "expires_on":"1767312000","ext_expires_in":"86399","not_before":"1767225300",
        "resource":"https://management.azure.com","token_type":"Bearer"}"#;

    #[test]
    fn imds_fields_are_kept_as_strings() {
        let token = Token::from_fields(fields(IMDS), UNIX_EPOCH).unwrap();
        let f = token.fields();
        assert_eq!(token.access_token(), "eyJ.x.y");
        assert_eq!(f.client_id.as_deref(), Some("c"));
        assert_eq!(f.expires_in.as_deref(), Some("86399"));
        assert_eq!(f.expires_on.as_deref(), Some("1767312000"));
        assert_eq!(f.ext_expires_in.as_deref(), Some("86399"));
        assert_eq!(f.not_before.as_deref(), Some("1767225300"));
        assert_eq!(f.resource.as_deref(), Some("https://management.azure.com"));
        assert_eq!(f.token_type.as_deref(), Some("Bearer"));
        assert_eq!(
            token.expires_on(),
            UNIX_EPOCH + Duration::from_secs(1_767_312_000)
        );
    }

    #[test]
    fn v2_numbers_give_an_expiry_relative_to_receipt() {
        let received = UNIX_EPOCH + Duration::from_secs(1000);
        let token = Token::from_fields(
            fields(r#"{"access_token":"a","token_type":"Bearer","expires_in":3599,"ext_expires_in":3599}"#),
            received,
        )
        .unwrap();
        assert_eq!(token.fields().expires_in.as_deref(), Some("3599"));
        assert_eq!(token.expires_on(), received + Duration::from_secs(3599));
    }

    #[test]
    fn expires_on_wins_over_expires_in() {
        let token = Token::from_fields(
            fields(r#"{"access_token":"a","expires_in":"10","expires_on":"50"}"#),
            UNIX_EPOCH + Duration::from_secs(1000),
        )
        .unwrap();
        assert_eq!(token.expires_on(), UNIX_EPOCH + Duration::from_secs(50));
    }

    #[test]
    fn expiries_out_of_range_are_refused_not_a_panic() {
        // The azure_wire fuzz target reproduces it: `UNIX_EPOCH + u64::MAX seconds` overflowed `SystemTime` and panicked.
        let at = UNIX_EPOCH + Duration::from_secs(1_750_000_000);
        for json in [
            r#"{"access_token":"a","expires_on":"18446744073709551615"}"#,
            r#"{"access_token":"a","expires_in":18446744073709551615}"#,
            r#"{"access_token":"a","expires_in":"9223372036854775807"}"#,
        ] {
            assert!(Token::from_fields(fields(json), at).is_err(), "{json}");
        }
    }

    #[test]
    fn unusable_responses_are_refused() {
        let at = UNIX_EPOCH;
        assert!(Token::from_fields(fields(r#"{"access_token":"a"}"#), at).is_err());
        assert!(
            Token::from_fields(fields(r#"{"access_token":"a","expires_on":"soon"}"#), at).is_err()
        );
        assert!(Token::from_fields(fields(r#"{"access_token":"","expires_in":"5"}"#), at).is_err());
        assert!(serde_json::from_str::<TokenFields>(r#"{"expires_in":"5"}"#).is_err());
    }

    #[test]
    fn freshness_keeps_a_margin() {
        let token = Token::from_fields(
            fields(r#"{"access_token":"a","expires_on":"1000"}"#),
            UNIX_EPOCH,
        )
        .unwrap();
        let at = |s| UNIX_EPOCH + Duration::from_secs(s);
        let margin = Duration::from_secs(300);
        assert!(token.is_fresh(at(699), margin));
        assert!(!token.is_fresh(at(700), margin));
        assert!(!token.is_fresh(at(2000), margin));
    }

    #[test]
    fn debug_output_never_shows_the_token() {
        let token = Token::from_fields(fields(IMDS), UNIX_EPOCH).unwrap();
        let debug = format!("{token:?}");
        assert!(!debug.contains("eyJ.x.y"), "{debug}");
        assert!(debug.contains("1767312000"), "{debug}");
    }
}
