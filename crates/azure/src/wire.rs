//! Small wire-format readers shared by every surface.

use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde::Deserialize;

/// A JSON value that Azure sends as a string on one surface and as a number on another
/// (IMDS and Entra v1 send `"3599"`, Entra v2 sends `3599`), kept as the text it carried.
pub(crate) fn string_or_number<'de, D>(deserializer: D) -> Result<Option<String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Loose {
        Text(String),
        Number(serde_json::Number),
    }
    Ok(
        Option::<Loose>::deserialize(deserializer)?.map(|v| match v {
            Loose::Text(text) => text,
            Loose::Number(number) => number.to_string(),
        }),
    )
}

/// `Retry-After` as integer seconds or an HTTP date (relative to `now`; a date in the past
/// means no wait).
pub(crate) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    parse_retry_after(value, now)
}

pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The first value of a header, as text.
pub(crate) fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Probe {
        #[serde(default, deserialize_with = "string_or_number")]
        value: Option<String>,
    }

    #[test]
    fn strings_and_numbers_are_kept_as_text() {
        let read = |json: &str| serde_json::from_str::<Probe>(json).map(|p| p.value);
        assert_eq!(
            read(r#"{"value":"3599"}"#).unwrap().as_deref(),
            Some("3599")
        );
        assert_eq!(read(r#"{"value":3599}"#).unwrap().as_deref(), Some("3599"));
        assert_eq!(read(r#"{"value":null}"#).unwrap(), None);
        assert_eq!(read(r#"{}"#).unwrap(), None);
        assert!(read(r#"{"value":[1]}"#).is_err());
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("0", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
        assert_eq!(parse_retry_after("1.5", now), None);
    }

    #[test]
    fn retry_after_header_is_read_trimmed() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers, SystemTime::now()), None);
        headers.insert(RETRY_AFTER, " 12 ".parse().unwrap());
        assert_eq!(
            retry_after(&headers, SystemTime::now()),
            Some(Duration::from_secs(12))
        );
    }
}
