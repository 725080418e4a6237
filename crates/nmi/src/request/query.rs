//! The token endpoint's query string: the audience and which identity the pod asks for.
//!
//! Rules (docs/nmi.md lists them with upstream's):
//! - pairs are separated by `&` only; a pair without `=` has an empty value; `+` is a space and
//!   `%XX` is decoded in names and values, as Go's `url.ParseQuery` does;
//! - names are case-sensitive; unknown names (`api-version`, `bypass_cache`, …) are ignored
//!   however they are written;
//! - a known name given twice is refused, as IMDS refuses repeated parameters (upstream took
//!   the first value, so two readers of one request could disagree on the identity);
//! - a known name whose value has a malformed escape or is not UTF-8 is refused;
//! - an empty selector value counts as absent (upstream's rule), an empty `resource` as missing;
//! - at most one identity selector may be given, as IMDS requires.

use std::fmt;

use super::path::percent_decode;

/// The identity a token request names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestedIdentity {
    /// No selector: the pod's only (or first) identity.
    Unspecified,
    /// `client_id`: the identity's client (application) ID.
    ClientId(String),
    /// `msi_res_id`, `mi_res_id` or `resource_id`: the identity's ARM resource ID.
    ResourceId(String),
    /// `object_id`: the identity's object (principal) ID.
    ObjectId(String),
}

impl RequestedIdentity {
    pub fn is_unspecified(&self) -> bool {
        matches!(self, Self::Unspecified)
    }
}

/// A valid token request's query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenQuery {
    /// The audience, passed on exactly as given (with or without a trailing slash).
    pub resource: String,
    pub identity: RequestedIdentity,
}

/// Why a token query was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("Required query variable 'resource' is missing")]
    MissingResource,
    #[error("Query parameter '{0}' is specified more than once")]
    Repeated(Parameter),
    #[error("Query parameter '{0}' is not correctly percent-encoded UTF-8")]
    Malformed(Parameter),
    #[error(
        "Only one of client_id, object_id or msi_res_id (mi_res_id, resource_id) may be specified; the request has {}",
        .0.iter().map(Parameter::name).collect::<Vec<_>>().join(", ")
    )]
    ConflictingSelectors(Vec<Parameter>),
}

/// The query parameters NMI reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Parameter {
    Resource,
    ClientId,
    ObjectId,
    MsiResId,
    MiResId,
    /// What the async Python `ManagedIdentityCredential` sends for `identity_config`'s
    /// `resource_id`.
    ResourceIdAlias,
}

impl Parameter {
    const ALL: [Self; 6] = [
        Self::Resource,
        Self::ClientId,
        Self::ObjectId,
        Self::MsiResId,
        Self::MiResId,
        Self::ResourceIdAlias,
    ];

    pub fn name(&self) -> &'static str {
        match self {
            Self::Resource => "resource",
            Self::ClientId => "client_id",
            Self::ObjectId => "object_id",
            Self::MsiResId => "msi_res_id",
            Self::MiResId => "mi_res_id",
            Self::ResourceIdAlias => "resource_id",
        }
    }

    fn from_name(name: &[u8]) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|parameter| parameter.name().as_bytes() == name)
    }
}

impl fmt::Display for Parameter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Reads the token endpoint's raw query string (without the `?`).
pub fn parse_token_query(raw: &str) -> Result<TokenQuery, QueryError> {
    let mut values: [Option<String>; Parameter::ALL.len()] = Default::default();
    for pair in raw.as_bytes().split(|&b| b == b'&') {
        let (name, value) = match pair.iter().position(|&b| b == b'=') {
            Some(at) => (&pair[..at], &pair[at + 1..]),
            None => (pair, &[][..]),
        };
        // A name with a bad escape cannot spell a known parameter (none contains `%`).
        let Some(parameter) = percent_decode(name, true)
            .as_deref()
            .and_then(Parameter::from_name)
        else {
            continue;
        };
        let slot = &mut values[parameter as usize];
        if slot.is_some() {
            return Err(QueryError::Repeated(parameter));
        }
        let value = percent_decode(value, true)
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or(QueryError::Malformed(parameter))?;
        *slot = Some(value);
    }
    let mut take = |parameter: Parameter| {
        values[parameter as usize]
            .take()
            .filter(|value| !value.is_empty())
    };
    let resource = take(Parameter::Resource);
    let selectors: Vec<(Parameter, String)> = [
        Parameter::ClientId,
        Parameter::ObjectId,
        Parameter::MsiResId,
        Parameter::MiResId,
        Parameter::ResourceIdAlias,
    ]
    .into_iter()
    .filter_map(|parameter| take(parameter).map(|value| (parameter, value)))
    .collect();
    if selectors.len() > 1 {
        return Err(QueryError::ConflictingSelectors(
            selectors
                .into_iter()
                .map(|(parameter, _)| parameter)
                .collect(),
        ));
    }
    let identity = match selectors.into_iter().next() {
        None => RequestedIdentity::Unspecified,
        Some((Parameter::ClientId, id)) => RequestedIdentity::ClientId(id),
        Some((Parameter::ObjectId, id)) => RequestedIdentity::ObjectId(id),
        Some((_, id)) => RequestedIdentity::ResourceId(id),
    };
    let resource = resource.ok_or(QueryError::MissingResource)?;
    Ok(TokenQuery { resource, identity })
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;
    use proptest::prelude::*;

    use super::*;

    fn query(resource: &str, identity: RequestedIdentity) -> TokenQuery {
        TokenQuery {
            resource: resource.to_owned(),
            identity,
        }
    }

    #[test]
    fn what_real_clients_send_is_understood() {
        use RequestedIdentity::*;
        let rid = "/subscriptions/s/resourcegroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/i";
        for (raw, expected) in [
            // adal (upstream's own MIC), form-encoded
            (
                "api-version=2018-02-01&client_id=c1&resource=https%3A%2F%2Fvault.azure.net",
                query("https://vault.azure.net", ClientId("c1".into())),
            ),
            (
                "api-version=2018-02-01&mi_res_id=%2Fsubscriptions%2Fs&resource=r",
                query("r", ResourceId("/subscriptions/s".into())),
            ),
            // azure-core leaves `:` and `/` unescaped
            (
                &format!(
                    "api-version=2018-02-01&resource=https://management.azure.com&msi_res_id={rid}"
                ),
                query("https://management.azure.com", ResourceId(rid.into())),
            ),
            // the async Python credential's spelling
            (
                &format!("api-version=2018-02-01&resource=r&resource_id={rid}"),
                query("r", ResourceId(rid.into())),
            ),
            (
                "api-version=2019-08-01&resource=r&object_id=o1",
                query("r", ObjectId("o1".into())),
            ),
            // az login --identity keeps the trailing slash
            (
                "resource=https://management.core.windows.net/&api-version=2018-02-01",
                query("https://management.core.windows.net/", Unspecified),
            ),
        ] {
            assert_eq!(parse_token_query(raw), Ok(expected), "{raw}");
        }
    }

    #[test]
    fn decoding_is_form_decoding_of_names_and_values() {
        assert_eq!(
            parse_token_query("resourc%65=a+b%2Bc&client%5Fid=x"),
            Ok(query("a b+c", RequestedIdentity::ClientId("x".into())))
        );
        // `;` separates nothing.
        assert_eq!(
            parse_token_query("resource=a;client_id=x"),
            Ok(query("a;client_id=x", RequestedIdentity::Unspecified))
        );
        // Names are case-sensitive; unknown and malformed names are ignored.
        assert_eq!(
            parse_token_query(
                "Resource=x&resource=r&CLIENT_ID=c&%zz=1&bypass_cache=true&api-version=1&api-version=2"
            ),
            Ok(query("r", RequestedIdentity::Unspecified))
        );
    }

    #[test]
    fn a_missing_or_empty_resource_is_refused() {
        for raw in [
            "",
            "api-version=2018-02-01",
            "resource=",
            "resource",
            "&&",
            "client_id=c",
        ] {
            assert_eq!(
                parse_token_query(raw),
                Err(QueryError::MissingResource),
                "{raw}"
            );
        }
        assert_eq!(
            QueryError::MissingResource.to_string(),
            "Required query variable 'resource' is missing"
        );
    }

    #[test]
    fn empty_selectors_count_as_absent() {
        assert_eq!(
            parse_token_query("resource=r&client_id=&msi_res_id="),
            Ok(query("r", RequestedIdentity::Unspecified))
        );
        assert_eq!(
            parse_token_query("resource=r&client_id&object_id=o"),
            Ok(query("r", RequestedIdentity::ObjectId("o".into())))
        );
    }

    #[test]
    fn repeated_known_parameters_are_refused_even_with_equal_values() {
        for (raw, parameter) in [
            ("resource=a&resource=a", Parameter::Resource),
            ("resource=a&client_id=c&client_id=d", Parameter::ClientId),
            ("resource=a&mi_res_id=&mi_res_id=x", Parameter::MiResId),
            (
                "resource=a&resource_id=x&resource%5Fid=x",
                Parameter::ResourceIdAlias,
            ),
        ] {
            assert_eq!(
                parse_token_query(raw),
                Err(QueryError::Repeated(parameter)),
                "{raw}"
            );
        }
    }

    #[test]
    fn malformed_known_values_are_refused() {
        for (raw, parameter) in [
            ("resource=%", Parameter::Resource),
            ("resource=r&client_id=%g0", Parameter::ClientId),
            ("resource=r&object_id=%ff", Parameter::ObjectId),
        ] {
            assert_eq!(
                parse_token_query(raw),
                Err(QueryError::Malformed(parameter)),
                "{raw}"
            );
        }
        // An unknown parameter's value is never looked at.
        assert!(parse_token_query("resource=r&x=%").is_ok());
    }

    #[test]
    fn several_selectors_are_refused_naming_each() {
        let error =
            parse_token_query("client_id=c&resource=r&mi_res_id=m&msi_res_id=n").unwrap_err();
        assert_eq!(
            error,
            QueryError::ConflictingSelectors(vec![
                Parameter::ClientId,
                Parameter::MsiResId,
                Parameter::MiResId
            ])
        );
        assert_eq!(
            error.to_string(),
            "Only one of client_id, object_id or msi_res_id (mi_res_id, resource_id) may be specified; the request has client_id, msi_res_id, mi_res_id"
        );
    }

    proptest! {
        #[test]
        fn parsing_never_panics(raw in any::<String>()) {
            let _ = parse_token_query(&raw);
        }

        #[test]
        fn a_single_selector_round_trips_through_encoding(
            resource in "[ -~]{1,40}",
            id in "[ -~]{1,40}",
            which in 0usize..5,
        ) {
            let names = ["client_id", "object_id", "msi_res_id", "mi_res_id", "resource_id"];
            let encode = |text: &str| -> String {
                text.bytes().map(|b| format!("%{b:02X}")).collect()
            };
            let raw = format!("api-version=2018-02-01&{}={}&resource={}", names[which], encode(&id), encode(&resource));
            let expected = match which {
                0 => RequestedIdentity::ClientId(id.clone()),
                1 => RequestedIdentity::ObjectId(id.clone()),
                _ => RequestedIdentity::ResourceId(id.clone()),
            };
            prop_assert_eq!(parse_token_query(&raw), Ok(query(&resource, expected)));
        }

        #[test]
        fn pair_order_does_not_matter(resource in "[a-z]{1,8}", id in "[a-z]{1,8}", extra in "[a-z]{1,8}") {
            let pairs = [format!("resource={resource}"), format!("client_id={id}"), format!("{extra}x=1")];
            let forward = parse_token_query(&pairs.join("&"));
            let reversed: Vec<_> = pairs.iter().rev().cloned().collect();
            prop_assert_eq!(forward, parse_token_query(&reversed.join("&")));
        }
    }
}
