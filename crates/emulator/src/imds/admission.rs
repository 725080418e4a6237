//! Admission rules, checked before any work and in this order (docs/azure-wire.md §1.1, §1.2):
//! `X-Forwarded-For` present → refused; `Metadata: true` missing → refused; `api-version`
//! missing or unsupported → refused; a repeated query parameter → refused; then per endpoint
//! `resource` missing, several identity selectors, or an unknown `format`.

use axum::http::HeaderMap;

use super::reply::{IdentityError, InstanceError};
use super::versions;

/// The parts of a request the admission rules look at.
#[derive(Debug, Clone, Copy)]
pub struct RequestHead<'a> {
    pub forwarded: bool,
    /// The `Metadata` header value; `Some("")` when present but not valid text.
    pub metadata: Option<&'a str>,
    pub query: &'a str,
}

impl<'a> RequestHead<'a> {
    pub fn of(headers: &'a HeaderMap, query: Option<&'a str>) -> Self {
        Self {
            forwarded: headers.contains_key("x-forwarded-for"),
            metadata: headers
                .get("metadata")
                .map(|v| v.to_str().unwrap_or_default()),
            query: query.unwrap_or_default(),
        }
    }
}

/// Why a request was refused at admission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Forwarded,
    MissingMetadata,
    MissingApiVersion,
    UnsupportedApiVersion(String),
    DuplicateParameter(String),
    MissingResource,
    ConflictingSelectors(Vec<&'static str>),
    UnsupportedFormat(String),
}

impl Refusal {
    /// The refusal in the identity endpoints' shape.
    pub fn identity_error(&self) -> IdentityError {
        IdentityError::invalid_request(match self {
            Refusal::Forwarded => {
                "Requests with an X-Forwarded-For header are refused: IMDS must be called \
                 directly, not through a proxy"
                    .to_string()
            }
            Refusal::MissingMetadata => "Required metadata header not specified".to_string(),
            Refusal::MissingApiVersion => {
                "Required query variable 'api-version' is missing".to_string()
            }
            Refusal::UnsupportedApiVersion(v) => format!(
                "api-version '{v}' is not supported by the identity endpoint; use {} or later \
                 from /metadata/versions",
                versions::IDENTITY_SINCE
            ),
            Refusal::DuplicateParameter(name) => {
                format!("Query parameter '{name}' is specified more than once")
            }
            Refusal::MissingResource => "Required query variable 'resource' is missing".to_string(),
            Refusal::ConflictingSelectors(names) => format!(
                "Only one of client_id, object_id or msi_res_id (mi_res_id, resource_id) may be \
                 specified; the request has {}",
                names.join(", ")
            ),
            Refusal::UnsupportedFormat(f) => {
                format!("Query parameter 'format' must be json or text, not '{f}'")
            }
        })
    }

    /// The refusal in the instance-metadata shape.
    pub fn instance_error(&self) -> InstanceError {
        match self {
            Refusal::MissingApiVersion | Refusal::UnsupportedApiVersion(_) => InstanceError {
                status: axum::http::StatusCode::BAD_REQUEST,
                body: serde_json::json!({
                    "error": "Bad request. api-version is invalid or was not specified in the \
                              request. For more information refer to aka.ms/azureimds",
                    "newest-versions": versions::newest(),
                }),
            },
            Refusal::MissingMetadata => {
                InstanceError::bad_request("Required metadata header not specified")
            }
            other => InstanceError::bad_request(&other.identity_error().description),
        }
    }
}

/// How an identity is chosen on a machine with several.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// `client_id`: the identity's client (application) ID.
    Client(String),
    /// `object_id`: the identity's object (principal) ID.
    Object(String),
    /// `msi_res_id`, `mi_res_id` or `resource_id`: the identity's ARM resource ID.
    Resource(String),
}

/// An admitted token request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenQuery {
    pub resource: String,
    pub selector: Option<Selector>,
    pub bypass_cache: bool,
}

/// Output format of `/metadata/instance`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Text,
}

/// Query parameters in request order, percent-decoded.
struct Params(Vec<(String, String)>);

impl Params {
    fn parse(query: &str) -> Self {
        Self(
            url::form_urlencoded::parse(query.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    fn first(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `name` unless absent or empty.
    fn non_empty(&self, name: &str) -> Option<&str> {
        self.first(name).filter(|v| !v.is_empty())
    }

    fn first_duplicate(&self) -> Option<&str> {
        self.0.iter().enumerate().find_map(|(i, (k, _))| {
            self.0[..i]
                .iter()
                .any(|(seen, _)| seen == k)
                .then_some(k.as_str())
        })
    }
}

fn metadata_ok(value: Option<&str>, strict_case: bool) -> bool {
    match value {
        Some(v) if strict_case => v == "true",
        Some(v) => v.trim().eq_ignore_ascii_case("true"),
        None => false,
    }
}

/// The checks every endpoint shares, up to the api-version and duplicates.
fn common(
    head: &RequestHead<'_>,
    strict_case: bool,
    api_version_ok: Option<fn(&str) -> bool>,
) -> Result<Params, Refusal> {
    if head.forwarded {
        return Err(Refusal::Forwarded);
    }
    if !metadata_ok(head.metadata, strict_case) {
        return Err(Refusal::MissingMetadata);
    }
    let params = Params::parse(head.query);
    if let Some(supported) = api_version_ok {
        match params.non_empty("api-version") {
            None => return Err(Refusal::MissingApiVersion),
            Some(v) if !supported(v) => return Err(Refusal::UnsupportedApiVersion(v.to_string())),
            Some(_) => {}
        }
    }
    if let Some(name) = params.first_duplicate() {
        return Err(Refusal::DuplicateParameter(name.to_string()));
    }
    Ok(params)
}

const SELECTORS: [&str; 5] = [
    "client_id",
    "object_id",
    "msi_res_id",
    "mi_res_id",
    "resource_id",
];

pub fn admit_token(head: &RequestHead<'_>, strict_case: bool) -> Result<TokenQuery, Refusal> {
    let params = common(head, strict_case, Some(versions::identity_supports))?;
    let resource = params
        .non_empty("resource")
        .ok_or(Refusal::MissingResource)?
        .to_string();
    let given: Vec<(&'static str, &str)> = SELECTORS
        .iter()
        .filter_map(|name| params.non_empty(name).map(|v| (*name, v)))
        .collect();
    let selector = match given.as_slice() {
        [] => None,
        [("client_id", v)] => Some(Selector::Client(v.to_string())),
        [("object_id", v)] => Some(Selector::Object(v.to_string())),
        [(_, v)] => Some(Selector::Resource(v.to_string())),
        many => {
            return Err(Refusal::ConflictingSelectors(
                many.iter().map(|(name, _)| *name).collect(),
            ));
        }
    };
    Ok(TokenQuery {
        resource,
        selector,
        bypass_cache: params
            .first("bypass_cache")
            .is_some_and(|v| v.eq_ignore_ascii_case("true")),
    })
}

pub fn admit_identity_info(head: &RequestHead<'_>, strict_case: bool) -> Result<(), Refusal> {
    common(head, strict_case, Some(versions::identity_supports)).map(|_| ())
}

pub fn admit_instance(head: &RequestHead<'_>, strict_case: bool) -> Result<Format, Refusal> {
    let params = common(head, strict_case, Some(versions::instance_supports))?;
    match params.first("format") {
        None | Some("json") => Ok(Format::Json),
        Some("text") => Ok(Format::Text),
        Some(other) => Err(Refusal::UnsupportedFormat(other.to_string())),
    }
}

/// `/metadata/versions` is the one unversioned endpoint.
pub fn admit_versions(head: &RequestHead<'_>, strict_case: bool) -> Result<(), Refusal> {
    common(head, strict_case, None).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn head(query: &str) -> RequestHead<'_> {
        RequestHead {
            forwarded: false,
            metadata: Some("true"),
            query,
        }
    }

    const OK: &str = "api-version=2018-02-01&resource=https://management.azure.com";

    #[test]
    fn a_plain_request_is_admitted_without_a_selector() {
        let q = admit_token(&head(OK), false).expect("admitted");
        assert_eq!(q.resource, "https://management.azure.com");
        assert_eq!(q.selector, None);
        assert!(!q.bypass_cache);
    }

    #[test]
    fn rules_apply_in_order() {
        let mut h = head("resource=x");
        h.forwarded = true;
        h.metadata = None;
        assert_eq!(admit_token(&h, false), Err(Refusal::Forwarded));
        h.forwarded = false;
        assert_eq!(admit_token(&h, false), Err(Refusal::MissingMetadata));
        h.metadata = Some("true");
        assert_eq!(admit_token(&h, false), Err(Refusal::MissingApiVersion));
        let h = head("api-version=2018-02-01&resource=x&resource=x");
        assert_eq!(
            admit_token(&h, false),
            Err(Refusal::DuplicateParameter("resource".into()))
        );
        assert_eq!(
            admit_token(&head("api-version=2018-02-01&resource="), false),
            Err(Refusal::MissingResource)
        );
    }

    #[test]
    fn metadata_case_is_lenient_unless_strict() {
        let mut h = head(OK);
        h.metadata = Some("True");
        assert!(admit_token(&h, false).is_ok());
        assert_eq!(admit_token(&h, true), Err(Refusal::MissingMetadata));
        h.metadata = Some("false");
        assert_eq!(admit_token(&h, false), Err(Refusal::MissingMetadata));
    }

    #[test]
    fn old_and_unknown_api_versions_are_refused_for_identity_but_not_instance() {
        let h = head("api-version=2017-12-01&resource=x");
        assert_eq!(
            admit_token(&h, false),
            Err(Refusal::UnsupportedApiVersion("2017-12-01".into()))
        );
        assert_eq!(admit_instance(&h, false), Ok(Format::Json));
        assert!(admit_instance(&head("api-version=2099-01-01"), false).is_err());
        assert_eq!(admit_versions(&head(""), false), Ok(()));
    }

    #[test]
    fn each_selector_spelling_is_understood_and_two_conflict() {
        let with = |extra: &str| admit_token(&head(&format!("{OK}&{extra}")), false);
        assert_eq!(
            with("client_id=A").expect("ok").selector,
            Some(Selector::Client("A".into()))
        );
        assert_eq!(
            with("object_id=B").expect("ok").selector,
            Some(Selector::Object("B".into()))
        );
        for name in ["msi_res_id", "mi_res_id", "resource_id"] {
            assert_eq!(
                with(&format!("{name}=/subscriptions/s"))
                    .expect("ok")
                    .selector,
                Some(Selector::Resource("/subscriptions/s".into()))
            );
        }
        assert_eq!(
            with("client_id=A&mi_res_id=/x"),
            Err(Refusal::ConflictingSelectors(vec![
                "client_id",
                "mi_res_id"
            ]))
        );
        assert!(with("bypass_cache=true").expect("ok").bypass_cache);
    }

    #[test]
    fn instance_formats() {
        let h =
            |f: &str| admit_instance(&head(&format!("api-version=2021-02-01&format={f}")), false);
        assert_eq!(h("text"), Ok(Format::Text));
        assert_eq!(h("json"), Ok(Format::Json));
        assert_eq!(h("xml"), Err(Refusal::UnsupportedFormat("xml".into())));
    }

    #[test]
    fn instance_shaped_refusals_list_the_newest_versions() {
        let body = Refusal::MissingApiVersion.instance_error().body;
        assert_eq!(body["newest-versions"].as_array().map(Vec::len), Some(3));
        assert!(
            body["error"]
                .as_str()
                .is_some_and(|e| e.starts_with("Bad request."))
        );
    }

    proptest! {
        #[test]
        fn any_repeated_parameter_is_refused(name in "[a-z_]{1,12}") {
            let query = format!("{OK}&{name}=1&{name}=2");
            prop_assert!(matches!(
                admit_token(&head(&query), false),
                Err(Refusal::DuplicateParameter(_))
            ));
        }

        #[test]
        fn admission_never_panics(query in ".{0,80}", metadata in proptest::option::of(".{0,8}")) {
            let h = RequestHead { forwarded: false, metadata: metadata.as_deref(), query: &query };
            let _ = admit_token(&h, false);
            let _ = admit_instance(&h, true);
        }
    }
}
