//! Creating objects as `kubectl` does (strict field validation) while keeping the API server's
//! `Warning` headers, which kube's typed API drops.

use kube::api::{ApiResource, DynamicObject, PostParams};
use kube::client::Body;
use kube::core::{Request, Status};
use kube::{Client, Resource};

use crate::Error;

/// What the API server answered to a successful write.
#[derive(Clone, Debug)]
pub struct Written {
    /// The object as stored (or as it would be, for a dry run).
    pub object: DynamicObject,
    /// The text of every `Warning` header, in order.
    pub warnings: Vec<String>,
}

/// Creates `object` in `namespace` with `fieldValidation=Strict` (an unknown or duplicated field
/// is an error, as with `kubectl apply`) and returns it with the warnings. A refusal is
/// `Error::Kube(kube::Error::Api(status))`, like kube's own `Api::create`.
pub async fn create_strict(
    client: &Client,
    resource: &ApiResource,
    namespace: &str,
    params: &PostParams,
    object: &DynamicObject,
) -> Result<Written, Error> {
    let url = DynamicObject::url_path(resource, Some(namespace));
    let body = serde_json::to_vec(object).map_err(kube::Error::SerdeError)?;
    let mut request = Request::new(url)
        .create(params, body)
        .map_err(kube::Error::BuildRequest)?;
    let strict = with_query_pair(&request.uri().to_string(), "fieldValidation=Strict");
    // A query pair of plain ASCII appended to a valid URI leaves it valid.
    *request.uri_mut() = strict
        .parse()
        .expect("a URI with one more query pair is a URI");

    let response = client.send(request.map(Body::from)).await?;
    let status = response.status();
    let warnings: Vec<String> = response
        .headers()
        .get_all("warning")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .filter_map(warning_text)
        .collect();
    let bytes = response.into_body().collect_bytes().await?;
    if status.is_success() {
        let object = serde_json::from_slice(&bytes).map_err(kube::Error::SerdeError)?;
        return Ok(Written { object, warnings });
    }
    let refusal = serde_json::from_slice::<Status>(&bytes).unwrap_or_else(|_| {
        Status::failure(&String::from_utf8_lossy(&bytes), "UnparsableResponse")
            .with_code(status.as_u16())
    });
    Err(kube::Error::Api(refusal.boxed()).into())
}

/// `url` with `pair` appended to its query.
fn with_query_pair(url: &str, pair: &str) -> String {
    match url.split_once('?') {
        Some((_, "")) => format!("{url}{pair}"),
        Some(_) => format!("{url}&{pair}"),
        None => format!("{url}?{pair}"),
    }
}

/// The text of a `Warning` header as the API server writes it, `299 - "<text>"` (RFC 9111
/// warn-code, agent `-`, quoted text with `\"` and `\\` escapes); `None` for another shape.
fn warning_text(header: &str) -> Option<String> {
    let quoted = header.strip_prefix("299 - \"")?;
    let mut text = String::with_capacity(quoted.len());
    let mut chars = quoted.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => text.push(chars.next()?),
            '"' => return chars.as_str().is_empty().then_some(text),
            other => text.push(other),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warning_text_unquotes_the_api_servers_header() {
        assert_eq!(
            warning_text(r#"299 - "spec.weight is ignored""#).as_deref(),
            Some("spec.weight is ignored")
        );
        assert_eq!(
            warning_text(r#"299 - "binding 'a': say \"hi\" \\ bye""#).as_deref(),
            Some(r#"binding 'a': say "hi" \ bye"#)
        );
        assert_eq!(warning_text(r#"299 - """#).as_deref(), Some(""));
    }

    #[test]
    fn warning_text_refuses_other_shapes() {
        for header in [
            "",
            "299 - unquoted",
            r#"199 - "other code""#,
            r#"299 agent "other agent""#,
            r#"299 - "unterminated"#,
            r#"299 - "trailing \"#,
            r#"299 - "text" "Sat, 01 Jan 2000 00:00:00 GMT""#,
        ] {
            assert_eq!(warning_text(header), None, "{header}");
        }
    }

    #[test]
    fn query_pairs_are_appended() {
        assert_eq!(with_query_pair("/a", "x=1"), "/a?x=1");
        assert_eq!(with_query_pair("/a?", "x=1"), "/a?x=1");
        assert_eq!(
            with_query_pair("/a?&dryRun=All", "x=1"),
            "/a?&dryRun=All&x=1"
        );
    }
}
