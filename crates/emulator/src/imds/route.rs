//! Which IMDS endpoint a path names. Real IMDS matches the `/metadata` segment in any case and
//! accepts a trailing slash after `token`; everything below `/metadata` is case-sensitive.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Token,
    IdentityInfo,
    Versions,
    /// `/metadata/instance` and the JSON path below it, one entry per segment.
    Instance(Vec<String>),
    Unknown,
}

const METADATA: &str = "/metadata";

pub fn classify(path: &str) -> Route {
    let Some(rest) = strip_metadata_prefix(path) else {
        return Route::Unknown;
    };
    match rest {
        "/identity/oauth2/token" | "/identity/oauth2/token/" => Route::Token,
        "/identity/info" | "/identity/info/" => Route::IdentityInfo,
        "/versions" | "/versions/" => Route::Versions,
        _ => match rest.strip_prefix("/instance") {
            Some("") => Route::Instance(Vec::new()),
            Some(below) if below.starts_with('/') => Route::Instance(
                below
                    .split('/')
                    .filter(|segment| !segment.is_empty())
                    .map(str::to_string)
                    .collect(),
            ),
            _ => Route::Unknown,
        },
    }
}

/// The path after a case-insensitive `/metadata` segment.
fn strip_metadata_prefix(path: &str) -> Option<&str> {
    let head = path.get(..METADATA.len())?;
    let rest = &path[METADATA.len()..];
    (head.eq_ignore_ascii_case(METADATA) && (rest.is_empty() || rest.starts_with('/')))
        .then_some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_metadata_segment_is_case_insensitive_and_token_takes_a_trailing_slash() {
        assert_eq!(classify("/metadata/identity/oauth2/token"), Route::Token);
        assert_eq!(classify("/METADATA/identity/oauth2/token/"), Route::Token);
        assert_eq!(classify("/Metadata/identity/info"), Route::IdentityInfo);
        assert_eq!(classify("/metadata/versions"), Route::Versions);
    }

    #[test]
    fn segments_below_metadata_are_case_sensitive() {
        assert_eq!(classify("/metadata/Identity/oauth2/token"), Route::Unknown);
        assert_eq!(
            classify("/metadata/identity/oauth2/token//"),
            Route::Unknown
        );
        assert_eq!(classify("/metadatax/identity/oauth2/token"), Route::Unknown);
        assert_eq!(classify("/metadata"), Route::Unknown);
        assert_eq!(classify("/"), Route::Unknown);
        assert_eq!(classify("/metadata/instancex"), Route::Unknown);
    }

    #[test]
    fn instance_paths_are_split_into_segments() {
        assert_eq!(classify("/metadata/instance"), Route::Instance(vec![]));
        assert_eq!(classify("/metadata/instance/"), Route::Instance(vec![]));
        assert_eq!(
            classify("/metadata/instance/network/interface/0/"),
            Route::Instance(vec!["network".into(), "interface".into(), "0".into()])
        );
    }

    #[test]
    fn multibyte_paths_do_not_panic() {
        assert_eq!(classify("/métadata/x"), Route::Unknown);
        assert_eq!(classify("/metadat€"), Route::Unknown);
    }
}
