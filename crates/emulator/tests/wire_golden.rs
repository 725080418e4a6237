//! Golden wire fixtures (docs/azure-wire.md; tags explained there): every file under `tests/golden/` is
//! written by hand from the reference (never captured from the emulator), and one test per
//! fixture drives the real emulator in-process over HTTP(S) to produce that answer.
//!
//! A fixture is `{"reference", "setup", "status", "headers", "body"}`: `reference` and `setup`
//! are prose for the reader; `status` must be equal; every header listed (lower-case name) must be
//! present and match (several values of one header are joined with `,`; unlisted headers are
//! ignored); `body` is matched strictly with the language below.
//!
//! Matching language (the whole of it):
//! - A literal (string, number, bool, null) must be equal — `3599` is not `"3599"`.
//!   Inside literal strings `${name}` is replaced by a variable the test supplies (IDs, URLs).
//! - Objects: same keys, no missing and no extra. A key written `"?name"` is optional: it may be
//!   absent, and if present its value must match.
//! - Arrays: same length, matched element by element.
//! - Placeholder strings:
//!   - `<string:any>` any string; `<string:digits>` a string of ASCII digits (`"86399"`);
//!   - `<string:guid>` a string GUID `8-4-4-4-12` hex; `<string:jwt>` a compact JWS whose header
//!     and payload are base64url JSON objects;
//!   - `<string:regex:PATTERN>` a string the whole of which matches PATTERN (`${name}` inside is
//!     replaced by the variable, regex-escaped);
//!   - `<number:int>` a JSON integer (not a string, not a float).
//! - `{"<string:json>": X}` (an object with that single key): a string holding a serialised JSON
//!   document that matches X — ARM's CRP 429 `details[].message`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use podid_emulator::testing::*;
use regex::Regex;
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{Map, Value, json};

type Vars = BTreeMap<&'static str, String>;

/// The fixture matcher: pure functions over JSON values.
mod golden {
    use super::*;

    const JSON_STRING: &str = "<string:json>";

    /// Every difference between `expected` (a fixture value) and `actual`, each naming its JSON
    /// path; empty when they match.
    pub fn mismatches(expected: &Value, actual: &Value, vars: &Vars) -> Vec<String> {
        let mut out = Vec::new();
        compare("$", expected, actual, vars, &mut out);
        out
    }

    fn compare(path: &str, expected: &Value, actual: &Value, vars: &Vars, out: &mut Vec<String>) {
        match expected {
            Value::String(pattern) => {
                if let Err(problem) = match_string_value(pattern, actual, vars) {
                    out.push(format!("{path}: {problem}"));
                }
            }
            Value::Object(wanted) if wanted.len() == 1 && wanted.contains_key(JSON_STRING) => {
                match actual.as_str().map(serde_json::from_str::<Value>) {
                    Some(Ok(inner)) => compare(
                        &format!("{path}<json>"),
                        &wanted[JSON_STRING],
                        &inner,
                        vars,
                        out,
                    ),
                    Some(Err(e)) => out.push(format!("{path}: a string but not JSON ({e})")),
                    None => out.push(format!(
                        "{path}: expected a JSON-holding string, got {actual}"
                    )),
                }
            }
            Value::Object(wanted) => compare_objects(path, wanted, actual, vars, out),
            Value::Array(wanted) => match actual.as_array() {
                Some(got) if got.len() == wanted.len() => {
                    for (i, (w, g)) in wanted.iter().zip(got).enumerate() {
                        compare(&format!("{path}[{i}]"), w, g, vars, out);
                    }
                }
                Some(got) => out.push(format!(
                    "{path}: expected an array of {} elements, got {}",
                    wanted.len(),
                    got.len()
                )),
                None => out.push(format!("{path}: expected an array, got {actual}")),
            },
            literal => {
                if literal != actual {
                    out.push(format!("{path}: expected {literal}, got {actual}"));
                }
            }
        }
    }

    fn compare_objects(
        path: &str,
        wanted: &Map<String, Value>,
        actual: &Value,
        vars: &Vars,
        out: &mut Vec<String>,
    ) {
        let Some(got) = actual.as_object() else {
            out.push(format!("{path}: expected an object, got {actual}"));
            return;
        };
        let mut known = Vec::new();
        for (key, value) in wanted {
            let (name, optional) = match key.strip_prefix('?') {
                Some(name) => (name, true),
                None => (key.as_str(), false),
            };
            known.push(name);
            match got.get(name) {
                Some(g) => compare(&format!("{path}.{name}"), value, g, vars, out),
                None if optional => {}
                None => out.push(format!("{path}: missing key {name:?}")),
            }
        }
        for key in got.keys().filter(|k| !known.contains(&k.as_str())) {
            out.push(format!("{path}: unexpected key {key:?} = {}", got[key]));
        }
    }

    fn match_string_value(pattern: &str, actual: &Value, vars: &Vars) -> Result<(), String> {
        if pattern == "<number:int>" {
            return if actual.is_i64() || actual.is_u64() {
                Ok(())
            } else {
                Err(format!("expected a JSON integer, got {actual}"))
            };
        }
        match actual.as_str() {
            Some(text) => match_str(pattern, text, vars),
            None => Err(format!("expected a string ({pattern}), got {actual}")),
        }
    }

    /// Matches one string (a body value or a header value) against a literal or placeholder.
    pub fn match_str(pattern: &str, text: &str, vars: &Vars) -> Result<(), String> {
        let ok = match pattern {
            "<string:any>" => true,
            "<string:digits>" => !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()),
            "<string:guid>" => guid().is_match(text),
            "<string:jwt>" => is_jwt(text),
            _ if pattern.starts_with("<string:regex:") && pattern.ends_with('>') => {
                let body = &pattern["<string:regex:".len()..pattern.len() - 1];
                let source = substitute(body, vars, regex::escape)?;
                let re = Regex::new(&format!("^(?:{source})$"))
                    .map_err(|e| format!("the fixture's regex is invalid: {e}"))?;
                re.is_match(text)
            }
            _ if pattern.starts_with("<string:") || pattern.starts_with("<number:") => {
                return Err(format!("unknown placeholder {pattern} in the fixture"));
            }
            literal => substitute(literal, vars, str::to_string)? == text,
        };
        if ok {
            Ok(())
        } else {
            Err(format!("expected {pattern:?}, got {text:?}"))
        }
    }

    fn guid() -> Regex {
        Regex::new("^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
            .expect("the GUID pattern compiles")
    }

    fn is_jwt(text: &str) -> bool {
        let parts: Vec<&str> = text.split('.').collect();
        let json_object = |part: &str| {
            URL_SAFE_NO_PAD
                .decode(part)
                .ok()
                .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
                .is_some_and(|v| v.is_object())
        };
        parts.len() == 3 && json_object(parts[0]) && json_object(parts[1]) && !parts[2].is_empty()
    }

    /// Replaces each `${name}` by `encode(vars[name])`; an unknown name is a fixture error.
    fn substitute(
        text: &str,
        vars: &Vars,
        encode: impl Fn(&str) -> String,
    ) -> Result<String, String> {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| format!("unterminated ${{ in the fixture: {text:?}"))?;
            let name = &after[..end];
            let value = vars.get(name).ok_or_else(|| {
                format!("the fixture uses ${{{name}}}, which the test does not set")
            })?;
            out.push_str(&encode(value));
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// A fixture file under `tests/golden/`.
    pub struct Fixture {
        pub name: String,
        pub status: u16,
        pub headers: Map<String, Value>,
        pub body: Value,
    }

    pub fn load(name: &str) -> Fixture {
        let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests", "golden", name]
            .iter()
            .collect();
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", path.display()));
        let value: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("fixture {name} is not JSON: {e}"));
        let fields = value
            .as_object()
            .unwrap_or_else(|| panic!("fixture {name} is not a JSON object"));
        for key in fields.keys() {
            assert!(
                ["reference", "setup", "status", "headers", "body"].contains(&key.as_str()),
                "fixture {name}: unknown top-level key {key:?}"
            );
        }
        for key in ["reference", "setup", "status", "body"] {
            assert!(fields.contains_key(key), "fixture {name}: no {key:?}");
        }
        let status = value["status"]
            .as_u64()
            .and_then(|s| u16::try_from(s).ok())
            .unwrap_or_else(|| panic!("fixture {name}: status is not an HTTP status"));
        let headers = value
            .get("headers")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        Fixture {
            name: name.to_string(),
            status,
            headers,
            body: value["body"].clone(),
        }
    }

    /// Every difference between the fixture and an answer.
    pub fn check(fixture: &Fixture, reply: &Reply, vars: &Vars) -> Vec<String> {
        let mut out = Vec::new();
        if reply.status.as_u16() != fixture.status {
            out.push(format!(
                "status: expected {}, got {}",
                fixture.status, reply.status
            ));
        }
        for (name, pattern) in &fixture.headers {
            let values: Vec<&str> = reply
                .headers
                .get_all(name.as_str())
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect();
            let Some(pattern) = pattern.as_str() else {
                out.push(format!(
                    "header {name}: the fixture's value must be a string"
                ));
                continue;
            };
            if values.is_empty() {
                out.push(format!("header {name}: missing"));
            } else if let Err(problem) = match_str(pattern, &values.join(","), vars) {
                out.push(format!("header {name}: {problem}"));
            }
        }
        out.extend(
            mismatches(&fixture.body, &reply.body, vars)
                .into_iter()
                .map(|m| format!("body {m}")),
        );
        out
    }
}

// ---------------------------------------------------------------------------------------------
// The matcher's own tests.

fn no_vars() -> Vars {
    Vars::new()
}

#[test]
fn literals_match_only_with_the_same_json_type() {
    assert!(golden::mismatches(&json!("3599"), &json!("3599"), &no_vars()).is_empty());
    assert_eq!(
        golden::mismatches(
            &json!({"expires_in": "3599"}),
            &json!({"expires_in": 3599}),
            &no_vars()
        ),
        vec![r#"$.expires_in: expected a string (3599), got 3599"#]
    );
    assert!(!golden::mismatches(&json!(3599), &json!("3599"), &no_vars()).is_empty());
    assert!(!golden::mismatches(&json!(3599), &json!(3599.0), &no_vars()).is_empty());
    assert!(!golden::mismatches(&json!(null), &json!(false), &no_vars()).is_empty());
}

#[test]
fn a_string_placeholder_fails_on_a_number_and_a_number_placeholder_on_a_string() {
    for pattern in [
        "<string:digits>",
        "<string:any>",
        "<string:guid>",
        "<string:regex:\\d+>",
    ] {
        assert!(
            !golden::mismatches(&json!(pattern), &json!(86399), &no_vars()).is_empty(),
            "{pattern}"
        );
    }
    assert!(golden::mismatches(&json!("<number:int>"), &json!(3599), &no_vars()).is_empty());
    assert!(!golden::mismatches(&json!("<number:int>"), &json!("3599"), &no_vars()).is_empty());
    assert!(!golden::mismatches(&json!("<number:int>"), &json!(35.5), &no_vars()).is_empty());
}

#[test]
fn objects_are_strict_on_missing_and_extra_keys_unless_optional() {
    let expected = json!({"a": "<string:any>", "?b": "<string:digits>"});
    assert!(golden::mismatches(&expected, &json!({"a": "x"}), &no_vars()).is_empty());
    assert!(golden::mismatches(&expected, &json!({"a": "x", "b": "12"}), &no_vars()).is_empty());
    assert_eq!(
        golden::mismatches(&expected, &json!({"a": "x", "b": "1x"}), &no_vars()),
        vec![r#"$.b: expected "<string:digits>", got "1x""#]
    );
    assert_eq!(
        golden::mismatches(&expected, &json!({"b": "1"}), &no_vars()),
        vec![r#"$: missing key "a""#]
    );
    assert_eq!(
        golden::mismatches(&expected, &json!({"a": "x", "c": 1}), &no_vars()),
        vec![r#"$: unexpected key "c" = 1"#]
    );
    assert!(!golden::mismatches(&expected, &json!(["a"]), &no_vars()).is_empty());
}

#[test]
fn arrays_match_element_by_element_with_the_same_length() {
    let expected = json!(["<number:int>"]);
    assert!(golden::mismatches(&expected, &json!([7000215]), &no_vars()).is_empty());
    assert!(!golden::mismatches(&expected, &json!(["7000215"]), &no_vars()).is_empty());
    assert!(!golden::mismatches(&expected, &json!([1, 2]), &no_vars()).is_empty());
    assert!(!golden::mismatches(&expected, &json!([]), &no_vars()).is_empty());
}

#[test]
fn guid_jwt_and_digits_placeholders_check_the_shape() {
    let m = |p: &str, v: &str| golden::mismatches(&json!(p), &json!(v), &no_vars()).is_empty();
    assert!(m("<string:guid>", "0000000a-0000-4000-8000-00000000000A"));
    assert!(!m("<string:guid>", "0000000a-0000-4000-8000-00000000000"));
    assert!(m("<string:digits>", "0"));
    assert!(!m("<string:digits>", ""));
    assert!(!m("<string:digits>", "-1"));
    let jwt = format!(
        "{}.{}.c2ln",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256"}"#),
        URL_SAFE_NO_PAD.encode(br#"{"aud":"x"}"#)
    );
    assert!(m("<string:jwt>", &jwt));
    assert!(!m("<string:jwt>", "abc.def.ghi"));
    assert!(!m("<string:jwt>", &jwt[..jwt.rfind('.').unwrap_or(0)]));
}

#[test]
fn variables_are_substituted_in_literals_and_escaped_in_regexes() {
    let vars: Vars = [("id", "/subscriptions/s/a.b".to_string())].into();
    let m = |p: &str, v: &str| golden::mismatches(&json!(p), &json!(v), &vars).is_empty();
    assert!(m(
        "Resource '${id}' gone",
        "Resource '/subscriptions/s/a.b' gone"
    ));
    assert!(!m(
        "Resource '${id}' gone",
        "Resource '/subscriptions/s/axb' gone"
    ));
    assert!(m("<string:regex:${id} \\d+>", "/subscriptions/s/a.b 42"));
    assert!(!m("<string:regex:${id} \\d+>", "/subscriptions/s/aXb 42"));
    assert!(!m("<string:regex:\\d+>", "42 "), "regexes are anchored");
    assert_eq!(
        golden::mismatches(&json!("${nope}"), &json!("x"), &vars),
        vec!["$: the fixture uses ${nope}, which the test does not set"]
    );
    assert!(
        !m("<string:unknown>", "x"),
        "unknown placeholders are errors"
    );
}

#[test]
fn a_json_string_placeholder_matches_the_document_inside_the_string() {
    let expected = json!({"<string:json>": {"allowedRequestCount": "<number:int>"}});
    let m = |v: Value| golden::mismatches(&expected, &v, &no_vars());
    assert!(m(json!(r#"{"allowedRequestCount":1200}"#)).is_empty());
    assert!(!m(json!(r#"{"allowedRequestCount":"1200"}"#)).is_empty());
    assert!(!m(json!(r#"{"allowedRequestCount":1200,"extra":1}"#)).is_empty());
    assert!(
        !m(json!({"allowedRequestCount": 1200})).is_empty(),
        "an object is not a string"
    );
    assert!(!m(json!("not json")).is_empty());
}

#[test]
fn every_fixture_is_well_formed_and_used_by_a_test() {
    let root: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests", "golden"]
        .iter()
        .collect();
    let this_file = include_str!("wire_golden.rs");
    let mut seen = 0;
    for surface in std::fs::read_dir(&root).expect("tests/golden exists") {
        let surface = surface.expect("a directory entry").path();
        for file in std::fs::read_dir(&surface).expect("a surface directory") {
            let path = file.expect("a directory entry").path();
            let name = path
                .strip_prefix(&root)
                .expect("under tests/golden")
                .to_string_lossy()
                .into_owned();
            golden::load(&name);
            assert!(
                this_file.contains(&format!("\"{name}\"")),
                "fixture {name} is not used by any test"
            );
            seen += 1;
        }
    }
    assert!(seen > 0, "no fixtures found under {}", root.display());
}

// ---------------------------------------------------------------------------------------------
// Driving the emulator.

const MULTI_VM: &str = "vm-multi";
const ARM_RESOURCE: &str = "https://management.azure.com/";
const IMDS_RESOURCE: &str = "https://management.azure.com";
const CORRELATION: &str = "c0ffee00-1111-4222-8333-444455556666";

/// Like `small_world` (without `ext-3` and the role-less principal), plus a VM with two
/// user-assigned identities and no system-assigned one, and no IMDS rate limits.
/// [`small_world`] plus a VM with two user-assigned identities and no system-assigned one
/// (for the "multiple identities" answer), with IMDS rate limits off.
fn golden_world() -> podid_emulator::WorldFile {
    let mut world = parse_world(&small_world());
    world.virtual_machines.push(
        serde_yaml_ng::from_str(&format!(
            "{{ resourceGroup: {NODE_RG}, name: {MULTI_VM}, identity: {{ userAssigned: [id-b, id-c] }} }}"
        ))
        .expect("a VM spec"),
    );
    world.knobs.imds.requests_per_second = 0;
    world.knobs.imds.max_concurrent = 0;
    world
}

async fn start() -> Emulator {
    Emulator::start_world(golden_world()).await
}

/// The variables fixtures may use.
fn vars(emu: &Emulator) -> Vars {
    let world = emu.shared().world();
    let object_id = |client: &str| world.service_principals[client].object_id.clone();
    Vars::from([
        ("tenant", TENANT.to_string()),
        ("subscription", SUBSCRIPTION.to_string()),
        ("entra", emu.entra_base().to_string()),
        ("arm", emu.arm_base().to_string()),
        ("micClientId", MIC.to_string()),
        ("micObjectId", object_id(MIC)),
        ("readerClientId", READER.to_string()),
        ("readerObjectId", object_id(READER)),
        (
            "nodeGroupId",
            format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/{NODE_RG}"),
        ),
        ("vmssId", vmss_id(NODE_RG, SCALE_SET)),
        ("idA", uami_id(NODE_RG, "id-a")),
        ("idB", uami_id(NODE_RG, "id-b")),
        ("idMissing", uami_id(NODE_RG, "id-missing")),
        ("ext1", uami_id(SHARED_RG, "ext-1")),
        ("ext2", uami_id(SHARED_RG, "ext-2")),
        ("correlation", CORRELATION.to_string()),
    ])
}

/// Panics with every difference between the named fixture and the answer.
fn assert_golden(name: &str, reply: &Reply, vars: &Vars) {
    let fixture = golden::load(name);
    let problems = golden::check(&fixture, reply, vars);
    assert!(
        problems.is_empty(),
        "{} differs from the emulator's answer:\n  {}\nheaders: {:?}\nbody: {}",
        fixture.name,
        problems.join("\n  "),
        reply.headers,
        serde_json::to_string_pretty(&reply.body).unwrap_or_default()
    );
}

/// Header typing on any answer (docs/azure-wire.md §3.8): `Retry-After` is whole seconds; the compute RP's remaining-count
/// header is `Microsoft.Compute/<Policy>;<n>[,…]`; the front door's counters are whole numbers.
fn assert_header_typing(reply: &Reply) {
    let values = |name: &str| -> Vec<String> {
        reply
            .headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap_or("<not text>").to_string())
            .collect()
    };
    let digits = Regex::new(r"^\d+$").expect("regex");
    let crp =
        Regex::new(r"^Microsoft\.Compute/\w+;\d+(,Microsoft\.Compute/\w+;\d+)*$").expect("regex");
    for value in values("retry-after") {
        assert!(
            digits.is_match(&value),
            "Retry-After {value:?} is not integer seconds"
        );
    }
    for value in values("x-ms-ratelimit-remaining-resource") {
        assert!(
            crp.is_match(&value),
            "x-ms-ratelimit-remaining-resource {value:?}"
        );
    }
    for name in [
        "x-ms-ratelimit-remaining-subscription-reads",
        "x-ms-ratelimit-remaining-subscription-writes",
    ] {
        for value in values(name) {
            assert!(digits.is_match(&value), "{name} {value:?}");
        }
    }
}

/// The headers every ARM answer carries (azure-wire.md §3.1).
fn assert_arm_common_headers(reply: &Reply, vars: &Vars) {
    let fixture = golden::load("arm/common-headers.json");
    let problems: Vec<String> = golden::check(&fixture, reply, vars)
        .into_iter()
        .filter(|p| p.starts_with("header"))
        .collect();
    assert!(problems.is_empty(), "{problems:?} in {:?}", reply.headers);
}

/// One ARM request, with the header checks every ARM answer gets.
async fn arm(
    emu: &Emulator,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Reply {
    let reply = emu.arm(method, path, token, body).await;
    assert_header_typing(&reply);
    assert_arm_common_headers(&reply, &vars(emu));
    reply
}

async fn read(response: reqwest::Response) -> Reply {
    let status = response.status();
    let headers: HeaderMap = response.headers().clone();
    let bytes = response.bytes().await.expect("a readable body");
    Reply {
        status,
        headers,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}

fn vmss_path() -> String {
    versioned(&vmss_id(NODE_RG, SCALE_SET), COMPUTE_API)
}

fn add_identities(ids: &[String]) -> Value {
    let map: Map<String, Value> = ids.iter().map(|id| (id.clone(), json!({}))).collect();
    json!({"identity": {"type": "UserAssigned", "userAssignedIdentities": map}})
}

// ---------------------------------------------------------------------------------------------
// IMDS (§1.4, §1.5)

async fn imds(emu: &Emulator, machine: &str, query: &str, metadata: bool) -> Reply {
    let base = emu.imds_base(machine);
    let mut request = emu
        .http()
        .get(format!("{base}/metadata/identity/oauth2/token?{query}"));
    if metadata {
        request = request.header("Metadata", "true");
    }
    let reply = read(request.send().await.expect("IMDS answers")).await;
    assert_header_typing(&reply);
    reply
}

fn imds_query(extra: &str) -> String {
    format!("api-version=2018-02-01&resource={IMDS_RESOURCE}{extra}")
}

#[tokio::test]
async fn imds_token_200_has_every_field_a_string() {
    let emu = start().await;
    let r = imds(&emu, &format!("{SCALE_SET}_0"), &imds_query(""), true).await;
    let mut v = vars(&emu);
    v.insert("clientId", "0000000a-0000-4000-8000-00000000000a".into());
    assert_golden("imds/token-200.json", &r, &v);
    emu.shutdown().await;
}

#[tokio::test]
async fn imds_unknown_selector_is_400_identity_not_found() {
    let emu = start().await;
    let query = imds_query("&client_id=0000000c-0000-4000-8000-00000000000c");
    let r = imds(&emu, &format!("{SCALE_SET}_0"), &query, true).await;
    assert_golden("imds/identity-not-found-400.json", &r, &vars(&emu));
    emu.shutdown().await;
}

#[tokio::test]
async fn imds_without_the_metadata_header_is_400() {
    let emu = start().await;
    let r = imds(&emu, &format!("{SCALE_SET}_0"), &imds_query(""), false).await;
    assert_golden("imds/missing-metadata-400.json", &r, &vars(&emu));
    emu.shutdown().await;
}

#[tokio::test]
async fn imds_with_several_user_assigned_identities_and_no_selector_is_400() {
    let emu = start().await;
    let r = imds(&emu, MULTI_VM, &imds_query(""), true).await;
    assert_golden("imds/multiple-identities-400.json", &r, &vars(&emu));
    emu.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Entra ID (§2.4, §2.5)

async fn entra(emu: &Emulator, path: &str, form: &[(&str, &str)]) -> Reply {
    let url = format!("{}/{TENANT}/{path}", emu.entra_base());
    let response = emu
        .https()
        .post(url)
        .header("client-request-id", CORRELATION)
        .form(form)
        .send()
        .await
        .expect("Entra answers");
    let reply = read(response).await;
    assert_header_typing(&reply);
    reply
}

#[tokio::test]
async fn entra_v1_200_has_every_field_a_string() {
    let emu = start().await;
    let r = entra(
        &emu,
        "oauth2/token",
        &[
            ("grant_type", "client_credentials"),
            ("client_id", MIC),
            ("client_secret", "mic-secret"),
            ("resource", ARM_RESOURCE),
        ],
    )
    .await;
    assert_golden("entra/v1-token-200.json", &r, &vars(&emu));
    emu.shutdown().await;
}

#[tokio::test]
async fn entra_v2_200_has_integers_and_no_resource_or_expires_on() {
    let emu = start().await;
    let r = entra(
        &emu,
        "oauth2/v2.0/token",
        &[
            ("grant_type", "client_credentials"),
            ("client_id", MIC),
            ("client_secret", "mic-secret"),
            ("scope", "https://management.azure.com/.default"),
        ],
    )
    .await;
    assert_golden("entra/v2-token-200.json", &r, &vars(&emu));
    emu.shutdown().await;
}

#[tokio::test]
async fn entra_wrong_secret_is_aadsts7000215_with_codes_and_trace_lines() {
    let emu = start().await;
    for (path, scope_key, scope) in [
        ("oauth2/token", "resource", ARM_RESOURCE),
        (
            "oauth2/v2.0/token",
            "scope",
            "https://management.azure.com/.default",
        ),
    ] {
        let r = entra(
            &emu,
            path,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", MIC),
                ("client_secret", "not-the-secret"),
                (scope_key, scope),
            ],
        )
        .await;
        assert_golden("entra/aadsts7000215-401.json", &r, &vars(&emu));
        // The trace lines repeat the body's own trace ID and timestamp.
        let description = r.body["error_description"].as_str().unwrap_or_default();
        let trace_lines = format!(
            "\r\nTrace ID: {}\r\nCorrelation ID: {CORRELATION}\r\nTimestamp: {}",
            r.body["trace_id"].as_str().unwrap_or_default(),
            r.body["timestamp"].as_str().unwrap_or_default()
        );
        assert!(description.ends_with(&trace_lines), "{description:?}");
    }
    emu.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// ARM errors (§3.7)

#[tokio::test]
async fn arm_write_without_the_role_is_403_authorization_failed() {
    let emu = start().await;
    let token = emu.arm_token(READER);
    let body = add_identities(&[uami_id(NODE_RG, "id-b")]);
    let r = arm(&emu, Method::PATCH, &vmss_path(), Some(&token), Some(&body)).await;
    assert_golden("arm/authorization-failed-403.json", &r, &vars(&emu));
    emu.shutdown().await;
}

#[tokio::test]
async fn arm_assigning_identities_without_assign_action_is_403_linked_authorization_failed() {
    let emu = start().await;
    let token = emu.arm_token(MIC);
    let body = add_identities(&[uami_id(SHARED_RG, "ext-1"), uami_id(SHARED_RG, "ext-2")]);
    let r = arm(&emu, Method::PATCH, &vmss_path(), Some(&token), Some(&body)).await;
    assert_golden("arm/linked-authorization-failed-403.json", &r, &vars(&emu));
    emu.shutdown().await;
}

#[tokio::test]
async fn arm_assigning_a_missing_identity_is_400_failed_identity_operation() {
    let emu = start().await;
    let token = emu.arm_token(MIC);
    let body = add_identities(&[uami_id(NODE_RG, "id-missing")]);
    let r = arm(&emu, Method::PATCH, &vmss_path(), Some(&token), Some(&body)).await;
    let mut v = vars(&emu);
    v.insert(
        "idMissingLower",
        uami_id(NODE_RG, "id-missing").to_lowercase(),
    );
    assert_golden("arm/failed-identity-operation-400.json", &r, &v);
    emu.shutdown().await;
}

#[tokio::test]
async fn arm_identity_keys_with_type_system_assigned_are_400_invalid_parameter() {
    let emu = start().await;
    let token = emu.arm_token(MIC);
    let body = json!({"identity": {"type": "SystemAssigned",
        "userAssignedIdentities": {uami_id(NODE_RG, "id-b"): {}}}});
    let r = arm(&emu, Method::PATCH, &vmss_path(), Some(&token), Some(&body)).await;
    assert_golden("arm/invalid-parameter-400.json", &r, &vars(&emu));
    emu.shutdown().await;
}

#[tokio::test]
async fn arm_the_same_identity_twice_is_400_invalid_parameter() {
    let emu = start().await;
    let token = emu.arm_token(MIC);
    let id = uami_id(NODE_RG, "id-b");
    let body = add_identities(&[id.clone(), id.to_lowercase()]);
    let r = arm(&emu, Method::PATCH, &vmss_path(), Some(&token), Some(&body)).await;
    assert_golden("arm/invalid-parameter-duplicate-400.json", &r, &vars(&emu));
    emu.shutdown().await;
}

#[tokio::test]
async fn arm_without_api_version_is_400_missing_api_version_parameter() {
    let emu = start().await;
    let token = emu.arm_token(READER);
    let r = arm(
        &emu,
        Method::GET,
        &vmss_id(NODE_RG, SCALE_SET),
        Some(&token),
        None,
    )
    .await;
    assert_golden("arm/missing-api-version-400.json", &r, &vars(&emu));
    emu.shutdown().await;
}

#[tokio::test]
async fn arm_unknown_scale_set_is_404_resource_not_found() {
    let emu = start().await;
    let token = emu.arm_token(READER);
    let path = versioned(&vmss_id(NODE_RG, "no-such-vmss"), COMPUTE_API);
    let r = arm(&emu, Method::GET, &path, Some(&token), None).await;
    assert_golden("arm/resource-not-found-404.json", &r, &vars(&emu));
    emu.shutdown().await;
}

#[tokio::test]
async fn arm_without_authorization_is_401_authentication_failed_with_www_authenticate() {
    let emu = start().await;
    let r = arm(&emu, Method::GET, &vmss_path(), None, None).await;
    assert_golden("arm/authentication-failed-401.json", &r, &vars(&emu));
    emu.shutdown().await;
}

async fn get_vmss_with(emu: &Emulator, token: &str) -> Reply {
    arm(emu, Method::GET, &vmss_path(), Some(token), None).await
}

#[tokio::test]
async fn arm_a_token_not_from_the_emulator_is_401_invalid_authentication_token() {
    let emu = start().await;
    let r = get_vmss_with(&emu, "not.a-token.at-all").await;
    assert_golden("arm/invalid-authentication-token-401.json", &r, &vars(&emu));
    emu.shutdown().await;
}

#[tokio::test]
async fn arm_an_expired_token_is_401_expired_authentication_token() {
    let emu = start().await;
    let token = emu.arm_token(READER);
    emu.advance_clock(3599 + 301).await;
    let r = get_vmss_with(&emu, &token).await;
    assert_golden("arm/expired-authentication-token-401.json", &r, &vars(&emu));
    emu.shutdown().await;
}

#[tokio::test]
async fn arm_a_token_for_another_audience_is_401_invalid_authentication_token_audience() {
    let emu = start().await;
    let token = emu.token_with(READER, "https://vault.azure.net", TENANT, 3599);
    let r = get_vmss_with(&emu, &token).await;
    assert_golden(
        "arm/invalid-authentication-token-audience-401.json",
        &r,
        &vars(&emu),
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn arm_a_token_from_another_tenant_is_401_invalid_authentication_token_tenant() {
    let emu = start().await;
    let token = emu.token_with(READER, ARM_RESOURCE, OTHER_TENANT, 3599);
    let r = get_vmss_with(&emu, &token).await;
    assert_golden(
        "arm/invalid-authentication-token-tenant-401.json",
        &r,
        &vars(&emu),
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn arm_unknown_resource_group_is_404_resource_group_not_found() {
    let emu = start().await;
    // A Reader of one group gets 403 elsewhere, as on Azure; the subscription's Owner sees 404.
    let token = emu.arm_token(OWNER);
    let path = versioned(&vmss_id("No-Such-RG", SCALE_SET), COMPUTE_API);
    let r = arm(&emu, Method::GET, &path, Some(&token), None).await;
    assert_golden("arm/resource-group-not-found-404.json", &r, &vars(&emu));
    emu.shutdown().await;
}

#[tokio::test]
async fn arm_an_unsupported_api_version_is_400_invalid_api_version_parameter() {
    let emu = start().await;
    let token = emu.arm_token(READER);
    let path = versioned(&vmss_id(NODE_RG, SCALE_SET), "2017-03-30");
    let r = arm(&emu, Method::GET, &path, Some(&token), None).await;
    assert_golden("arm/invalid-api-version-400.json", &r, &vars(&emu));
    emu.shutdown().await;
}

#[tokio::test]
async fn arm_an_update_during_another_is_409_conflict() {
    let emu = start().await;
    emu.set_knobs(json!({"arm": {"lroDurationMs": 60000}}))
        .await;
    start_update(&emu).await;
    let token = emu.arm_token(MIC);
    let body = add_identities(&[uami_id(NODE_RG, "id-c")]);
    let r = arm(&emu, Method::PATCH, &vmss_path(), Some(&token), Some(&body)).await;
    assert_golden("arm/conflict-409.json", &r, &vars(&emu));
    emu.shutdown().await;
}

#[tokio::test]
async fn arm_updating_a_scale_set_marked_for_deletion_is_409_operation_not_allowed() {
    let emu = start().await;
    let marked = emu
        .admin(
            Method::POST,
            "/admin/arm/provisioning-state",
            Some(&json!({"resource": vmss_id(NODE_RG, SCALE_SET), "state": "Deleting"})),
        )
        .await;
    assert_eq!(marked.status, StatusCode::OK, "{}", marked.body);
    let token = emu.arm_token(MIC);
    let body = add_identities(&[uami_id(NODE_RG, "id-b")]);
    let r = arm(&emu, Method::PATCH, &vmss_path(), Some(&token), Some(&body)).await;
    assert_golden("arm/operation-not-allowed-409.json", &r, &vars(&emu));
    emu.shutdown().await;
}

#[tokio::test]
async fn arm_more_identities_than_the_per_request_limit_is_400_failed_identity_operation() {
    let emu = start().await;
    emu.set_knobs(json!({"arm": {"identitiesPerRequest": 1}}))
        .await;
    let token = emu.arm_token(MIC);
    let body = add_identities(&[uami_id(NODE_RG, "id-b"), uami_id(NODE_RG, "id-c")]);
    let r = arm(&emu, Method::PATCH, &vmss_path(), Some(&token), Some(&body)).await;
    assert_golden("arm/too-many-identities-400.json", &r, &vars(&emu));
    emu.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// ARM throttling (§3.8)

#[tokio::test]
async fn arm_compute_rp_429_carries_the_serialised_json_detail() {
    let emu = start().await;
    emu.set_knobs(json!({"arm": {"computePolicies": {"scaleSetGet": [
        {"name": "GetVMScaleSet3Min", "windowSeconds": 180, "limit": 2},
        {"name": "GetVMScaleSet30Min", "windowSeconds": 1800, "limit": 100}
    ]}}}))
    .await;
    let token = emu.arm_token(READER);
    for _ in 0..2 {
        let r = arm(&emu, Method::GET, &vmss_path(), Some(&token), None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    let r = arm(&emu, Method::GET, &vmss_path(), Some(&token), None).await;
    assert_golden("arm/compute-throttled-429.json", &r, &vars(&emu));
    emu.shutdown().await;
}

#[tokio::test]
async fn arm_front_door_429_is_subscription_requests_throttled() {
    let emu = start().await;
    emu.set_knobs(json!({"arm": {"subscriptionReads": {"capacity": 1, "refillPerSecond": 0.01}}}))
        .await;
    let token = emu.arm_token(READER);
    let first = arm(&emu, Method::GET, &vmss_path(), Some(&token), None).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    let r = arm(&emu, Method::GET, &vmss_path(), Some(&token), None).await;
    assert_golden("arm/subscription-throttled-429.json", &r, &vars(&emu));
    emu.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// ARM long-running operations (§3.5)

/// PATCHes the scale set as MIC and returns the operation URL and its operation ID.
async fn start_update(emu: &Emulator) -> (String, String) {
    let token = emu.arm_token(MIC);
    let body = add_identities(&[uami_id(NODE_RG, "id-b")]);
    let r = arm(emu, Method::PATCH, &vmss_path(), Some(&token), Some(&body)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["properties"]["provisioningState"], "Updating");
    assert!(r.header("retry-after").is_some(), "{:?}", r.headers);
    let url = r
        .header("azure-asyncoperation")
        .expect("an Azure-AsyncOperation header")
        .to_string();
    let operation = url
        .split('?')
        .next()
        .and_then(|path| path.rsplit('/').next())
        .unwrap_or_default()
        .to_string();
    (url, operation)
}

async fn poll(emu: &Emulator, url: &str) -> Reply {
    let path = url
        .strip_prefix(emu.arm_base())
        .expect("the operation URL points at the emulator's ARM");
    arm(emu, Method::GET, path, Some(&emu.arm_token(MIC)), None).await
}

fn with_operation(emu: &Emulator, operation: String) -> Vars {
    let mut v = vars(emu);
    v.insert("operation", operation);
    v
}

#[tokio::test]
async fn arm_operation_in_progress_then_succeeded() {
    let emu = start().await;
    emu.set_knobs(json!({"arm": {"lroDurationMs": 60000}}))
        .await;
    let (url, operation) = start_update(&emu).await;
    let v = with_operation(&emu, operation);
    assert_golden(
        "arm/operation-in-progress.json",
        &poll(&emu, &url).await,
        &v,
    );
    emu.advance_clock(61).await;
    assert_golden("arm/operation-succeeded.json", &poll(&emu, &url).await, &v);
    emu.shutdown().await;
}

#[tokio::test]
async fn arm_operation_failed_by_an_lro_failure_fault() {
    let emu = start().await;
    emu.set_knobs(json!({"arm": {"lroDurationMs": 60000}}))
        .await;
    emu.add_fault(json!({
        "surface": "arm", "times": 1,
        "action": {"kind": "lroFailure", "code": "InternalExecutionError",
                   "message": "An internal execution error occurred."}
    }))
    .await;
    let (url, operation) = start_update(&emu).await;
    emu.advance_clock(61).await;
    let v = with_operation(&emu, operation);
    assert_golden("arm/operation-failed.json", &poll(&emu, &url).await, &v);
    emu.shutdown().await;
}
