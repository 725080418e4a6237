//! Request paths: decoding, cleaning, and the shapes the router recognizes.
//!
//! Upstream's router (gorilla/mux) matched the *decoded* path after cleaning it the way Go's
//! `path.Clean` does, and redirected (301) any request whose path was not already clean. The
//! same happens here, so `/metadata%2Fidentity/oauth2/token` is the token endpoint and
//! `/a/../metadata/identity/oauth2/token` is a redirect, never a proxied request.

/// Why a raw path could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidEscape;

/// The raw path with `%XX` escapes decoded (`+` stays a plus in a path). A `%` not followed
/// by two hex digits is refused, as Go's URL parser does (its server answers 400). Bytes that
/// are not UTF-8 become U+FFFD: no route contains one, so they cannot create a match.
pub fn decode(raw: &str) -> Result<String, InvalidEscape> {
    percent_decode(raw.as_bytes(), false)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .ok_or(InvalidEscape)
}

/// Percent-decodes `input`; with `plus_is_space` (query strings) `+` is a space. `None` on a
/// malformed escape.
pub(crate) fn percent_decode(input: &[u8], plus_is_space: bool) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len());
    let mut bytes = input.iter();
    while let Some(&byte) = bytes.next() {
        match byte {
            b'%' => {
                let high = bytes.next().copied().and_then(hex_value)?;
                let low = bytes.next().copied().and_then(hex_value)?;
                out.push(high << 4 | low);
            }
            b'+' if plus_is_space => out.push(b' '),
            other => out.push(other),
        }
    }
    Some(out)
}

fn hex_value(digit: u8) -> Option<u8> {
    char::from(digit)
        .to_digit(16)
        .and_then(|value| u8::try_from(value).ok())
}

/// The path as Go's `path.Clean` leaves it, rooted, keeping a trailing slash (mux's
/// `cleanPath`): repeated slashes and `.` segments go, `..` removes the segment before it and
/// stops at the root. Backslashes are ordinary characters.
pub fn clean(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            kept => segments.push(kept),
        }
    }
    if segments.is_empty() {
        return "/".to_owned();
    }
    let mut cleaned = String::with_capacity(path.len() + 1);
    for segment in segments {
        cleaned.push('/');
        cleaned.push_str(segment);
    }
    if path.ends_with('/') {
        cleaned.push('/');
    }
    cleaned
}

/// The `Location` of the redirect to `cleaned`: the path escaped again and the raw query
/// kept. Every byte outside visible ASCII is escaped, so the value is always a valid header.
pub fn redirect_location(cleaned: &str, raw_query: &str) -> String {
    let mut location = String::with_capacity(cleaned.len() + raw_query.len() + 1);
    for &byte in cleaned.as_bytes() {
        if is_path_char(byte) {
            location.push(char::from(byte));
        } else {
            push_escaped(&mut location, byte);
        }
    }
    if !raw_query.is_empty() {
        location.push('?');
        for &byte in raw_query.as_bytes() {
            if byte.is_ascii_graphic() && byte != b'#' {
                location.push(char::from(byte));
            } else {
                push_escaped(&mut location, byte);
            }
        }
    }
    location
}

/// Characters a path segment may hold unescaped (RFC 3986 `pchar` and `/`), `%` excluded
/// because the path being escaped is already decoded.
fn is_path_char(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/".contains(&byte)
}

fn push_escaped(out: &mut String, byte: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(char::from(HEX[usize::from(byte >> 4)]));
    out.push(char::from(HEX[usize::from(byte & 0x0f)]));
}

const METADATA: &[u8] = b"/metadata";

/// The rest of the path after a first segment `metadata` in any letter case.
fn after_metadata(path: &str) -> Option<&str> {
    let head = path.as_bytes().get(..METADATA.len())?;
    // The head is ASCII when it matches, so slicing after it stays on a char boundary.
    head.eq_ignore_ascii_case(METADATA)
        .then(|| path.get(METADATA.len()..))
        .flatten()
}

/// The token endpoint exactly: `/metadata/identity/oauth2/token`, optionally with a trailing
/// slash; `metadata` in any case, the rest case-sensitive.
pub fn is_token_path(path: &str) -> bool {
    matches!(
        after_metadata(path),
        Some("/identity/oauth2/token" | "/identity/oauth2/token/")
    )
}

/// Any other spelling of the token endpoint: `/metadata/identity`, later `oauth2`, later
/// `token`, all in any case and with anything in between (backslashes, extra segments,
/// newlines). Such a path must never reach IMDS, which would answer with the node's identity.
/// Letters compare by Unicode lower case, so a Kelvin sign spells the `k` of `token`, and
/// backslashes count as slashes (then cleaned), as a server that reads `\` as `/` sees them:
/// `/\metadata\identity\oauth2\token` is a spelling too (found by fuzzing). Each segment is
/// read as a lenient server might: path parameters (`;…`) dropped, control characters and
/// blanks removed, dots trimmed at its ends, so `/metadata;x/identity/…`, `/metadata%00/…` and
/// `/metadata./…` are spellings too (found by the attack battery).
pub fn resembles_token_path(path: &str) -> bool {
    let lower = clean(&lenient_segments(&path.to_lowercase().replace('\\', "/")));
    lower
        .find("/metadata/identity")
        .and_then(|start| {
            let rest = &lower[start + "/metadata/identity".len()..];
            rest.find("oauth2").map(|at| &rest[at + "oauth2".len()..])
        })
        .is_some_and(|rest| rest.contains("token"))
}

/// The path with each segment as the most lenient reader would take it (see
/// [`resembles_token_path`]).
fn lenient_segments(path: &str) -> String {
    path.split('/')
        .map(|segment| {
            let before_parameters = segment.split(';').next().unwrap_or_default();
            let visible: String = before_parameters
                .chars()
                .filter(|c| !c.is_control() && !c.is_whitespace())
                .collect();
            visible.trim_matches('.').to_owned()
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// `/metadata/instance` and everything starting with it (upstream blocked by prefix).
pub fn is_instance_path(path: &str) -> bool {
    after_metadata(path).is_some_and(|rest| rest.starts_with("/instance"))
}

/// Anything starting with `/host/token`, upstream's host endpoint (matched by prefix).
pub fn is_host_token_prefix(path: &str) -> bool {
    path.starts_with("/host/token")
}

/// The host endpoint exactly, optionally with a trailing slash.
pub fn is_host_token_path(path: &str) -> bool {
    matches!(path, "/host/token" | "/host/token/")
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn escapes_are_decoded_and_malformed_ones_refused() {
        assert_eq!(
            decode("/metadata%2Fidentity/oauth2/token").unwrap(),
            "/metadata/identity/oauth2/token"
        );
        assert_eq!(decode("/a+b%20c").unwrap(), "/a+b c");
        assert_eq!(decode("/%e2%82%ac").unwrap(), "/\u{20ac}");
        assert_eq!(decode("/%ff").unwrap(), "/\u{fffd}");
        assert_eq!(decode("/%"), Err(InvalidEscape));
        assert_eq!(decode("/%4"), Err(InvalidEscape));
        assert_eq!(decode("/%zz"), Err(InvalidEscape));
    }

    #[test]
    fn cleaning_follows_go_path_clean_and_keeps_a_trailing_slash() {
        for (raw, cleaned) in [
            ("", "/"),
            ("/", "/"),
            ("//", "/"),
            ("a", "/a"),
            ("/a/", "/a/"),
            ("/a//b", "/a/b"),
            ("/a/./b/.", "/a/b"),
            ("/a/../b", "/b"),
            ("/../../b", "/b"),
            ("/a/..", "/"),
            ("/a/../", "/"),
            ("/a/b/../", "/a/"),
            (
                "/metadata/identity\\oauth2\\token",
                "/metadata/identity\\oauth2\\token",
            ),
            ("/...", "/..."),
        ] {
            assert_eq!(clean(raw), cleaned, "{raw:?}");
        }
    }

    #[test]
    fn the_location_escapes_the_path_and_keeps_the_query() {
        assert_eq!(
            redirect_location("/metadata/identity/oauth2/token", "resource=r&client_id=c"),
            "/metadata/identity/oauth2/token?resource=r&client_id=c"
        );
        assert_eq!(
            redirect_location("/a b/%\u{20ac}", ""),
            "/a%20b/%25%E2%82%AC"
        );
        assert_eq!(redirect_location("/a", "x=\r\n#"), "/a?x=%0D%0A%23");
    }

    #[test]
    fn only_the_metadata_segment_of_the_token_path_ignores_case() {
        assert!(is_token_path("/metadata/identity/oauth2/token"));
        assert!(is_token_path("/metadata/identity/oauth2/token/"));
        assert!(is_token_path("/MetaData/identity/oauth2/token"));
        assert!(!is_token_path("/metadata/Identity/oauth2/token"));
        assert!(!is_token_path("/metadata/identity/oauth2/tokens"));
        assert!(!is_token_path("/metadata/identity/oauth2/token/x"));
        assert!(!is_token_path("/metadat"));
        assert!(!is_token_path("/m\u{e9}tadata/identity/oauth2/token"));
    }

    #[test]
    fn token_path_lookalikes_are_recognized_in_any_case() {
        for path in [
            "/metadata/identity\\oauth2\\token",
            "/metadata/identity/x/oauth2/token",
            "/metadata/identity/oauth2/tokens",
            "/metadata/identity/oauth2/token/x",
            "/metadata/Identity/oauth2/token",
            "/METADATA/IDENTITY/OAUTH2/TOKEN",
            "/x/metadata/identity\n/oauth2/token",
            "/metadata/identityoauth2/to\u{212A}en",
            // Found by fuzzing: a backslash before `metadata`, or backslashes throughout.
            "/\\metadata/identity/oauth2/token",
            "/x\\metadata\\identity\\oauth2\\token",
            "/\\\\metadata\\.\\identity\\oauth2\\token",
            "/a\\..\\metadata/identity/oauth2/token",
            // Found by the attack battery: what a lenient reader drops inside a segment.
            "/metadata;x=y/identity/oauth2/token",
            "/metadata;/identity/oauth2/token",
            "/metadata\0/identity/oauth2/token",
            "/metadata /identity/oauth2/token",
            "/metadata\t/identity/oauth2/token",
            "/metadata./identity/oauth2/token",
            "/metadata/identity./oauth2;v=1/token",
        ] {
            assert!(resembles_token_path(path), "{path:?}");
        }
        for path in [
            "/metadata/identity/info",
            "/metadata/instance/compute",
            "/metadata/identity/token/oauth2",
            "/metadata/oauth2/token",
        ] {
            assert!(!resembles_token_path(path), "{path:?}");
        }
    }

    #[test]
    fn instance_and_host_paths_match_by_prefix() {
        assert!(is_instance_path("/metadata/instance"));
        assert!(is_instance_path("/METADATA/instance/compute/vmId"));
        assert!(is_instance_path("/metadata/instances"));
        assert!(!is_instance_path("/metadata/Instance"));
        assert!(!is_instance_path("/metadata/versions"));
        assert!(is_host_token_prefix("/host/tokenx"));
        assert!(is_host_token_path("/host/token/"));
        assert!(!is_host_token_path("/host/tokenx"));
    }

    proptest! {
        #[test]
        fn cleaning_is_idempotent_and_rooted(path in "[a-z./\\\\]{0,24}") {
            let once = clean(&path);
            prop_assert!(once.starts_with('/'));
            prop_assert!(!once.contains("//"));
            prop_assert!(!once.split('/').any(|s| s == "." || s == ".."));
            prop_assert_eq!(clean(&once), once);
        }

        #[test]
        fn a_location_is_always_a_visible_ascii_header(path in any::<String>(), query in any::<String>()) {
            let location = redirect_location(&clean(&path), &query);
            prop_assert!(location.bytes().all(|b| b.is_ascii_graphic()));
            // Escaping then decoding gives the cleaned path back.
            let path_part = location.split('?').next().unwrap_or_default();
            prop_assert_eq!(decode(path_part).unwrap(), clean(&path));
        }

        #[test]
        fn decoding_never_panics(raw in any::<String>()) {
            let _ = decode(&raw);
        }
    }
}
