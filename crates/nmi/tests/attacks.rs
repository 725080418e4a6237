//! The attack battery: ways a pod might get a token it should not have, each tried against a
//! real NMI (the test control plane, the emulator, pods calling from their own 127.x.y.z
//! address), and each required to be refused with the status and IMDS-shaped body of
//! docs/nmi.md's table, with the emulator having issued no token for it.
//!
//! Most attacks run in a [`Scene`]: two pods, `alice` and `bob`, each selected by its own
//! AzureIdentityBinding and with its identity (alpha, beta) `Assigned`, both tokens fetched
//! once so that they sit in NMI's cache (the worst case: a wrong decision would hand out a
//! cached token without asking the emulator). The attacker is usually alice, the prize bob's
//! identity. Every scene ends by checking that NMI still serves alice's own token (it did not
//! crash) and that the emulator issued no token after the scene was primed.
//!
//! Raw attacks (path spellings a URL library would normalize, malformed HTTP, pipelining) go
//! through [`exchange`], a byte-level HTTP/1 client bound to the pod's IP.
//!
//! Everything this test binary logs is captured ([`LOG_FILTER`]); the last test by name
//! (`z_…`, libtest starts tests in name order) waits for the others and checks that no token
//! and no secret was ever logged.

mod support;

use std::fmt::Debug;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::{ByteString, NamespaceResourceScope};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use podid_api::names::{BEHAVIOR_ANNOTATION, BEHAVIOR_NAMESPACED, POD_LABEL_KEY};
use podid_api::{
    AssignedIdentityState, AzureAssignedIdentity, AzureIdentity, AzureIdentityBinding,
    AzureIdentityBindingSpec, AzurePodIdentityException, AzurePodIdentityExceptionSpec,
};
use podid_emulator::testing::{Emulator, NODE_RG, Surface, TENANT, uami_id};
use podid_nmi::server::Settings;
use podid_nmi::state::{Mode, NodeState};
use podid_testkit::{
    TestNamespace, create_pod, delete_pod_now, pod_on_node, set_pod_running, unique_name, wait_for,
};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// What this binary logs: everything NMI and the Azure clients say, at their most verbose. The
/// emulator runs in this process too; it is left out, since the scan is of NMI's log.
const LOG_FILTER: &str = "debug,podid_nmi=trace,podid_azure=trace,podid_emulator=off";
/// A bound on a broken test only; nothing asserts how long an answer takes.
const GUARD: Duration = Duration::from_secs(60);
/// `https://vault.azure.net`, form-encoded.
const VAULT_QUERY: &str = "https%3A%2F%2Fvault.azure.net";
/// The token path and a query asking for vault, as real clients send it.
const TOKEN: &str =
    "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fvault.azure.net";
/// The clean token path.
const TOKEN_PATH: &str = "/metadata/identity/oauth2/token";

fn beta_id() -> String {
    uami_id(NODE_RG, "beta")
}

/// `TOKEN` asking for beta.
fn token_for_beta() -> String {
    format!("{TOKEN}&client_id={BETA_CLIENT}")
}

/// The refusal an attack must get: docs/nmi.md's status, the IMDS error code, and a part of the
/// description.
#[derive(Debug, Clone, Copy)]
struct Expected {
    status: u16,
    code: &'static str,
    description: &'static str,
}

const fn invalid(description: &'static str) -> Expected {
    Expected {
        status: 400,
        code: "invalid_request",
        description,
    }
}

/// No identity answers what the pod asked (`NoIdentity` and `NotBound` both say it).
const NOT_FOUND: Expected = invalid("Identity not found");
/// The pod asked for nothing and has nothing.
const NO_IDENTITY: Expected = invalid("no AzureIdentity is assigned to pod");
const LOOKALIKE: Expected = invalid("Invalid request");
const NO_METADATA: Expected = invalid("Required metadata header not specified");
const FORWARDED: Expected = invalid("X-Forwarded-For header are refused");
const REPEATED: Expected = invalid("specified more than once");
const CONFLICTING: Expected = invalid("Only one of client_id");
const NOT_UTF8: Expected = invalid("'client_id' is not correctly percent-encoded UTF-8");
const BAD_ESCAPE: Expected = invalid("the request path is not correctly percent-encoded");
const OBJECT_ID: Expected = invalid("object_id is not supported");
const NO_ENDPOINT: Expected = Expected {
    status: 404,
    code: "not_found",
    description: "no such endpoint on this port",
};
const NOT_YET: Expected = Expected {
    status: 404,
    code: "not_found",
    description: "Identity not yet available",
};
const NO_POD: Expected = Expected {
    status: 500,
    code: "server_error",
    description: "no Pending or Running pod on this node has IP",
};
const SEVERAL_PODS: Expected = Expected {
    status: 500,
    code: "server_error",
    description: "2 Pending or Running pods on this node have IP",
};
const HOST_NETWORK: Expected = Expected {
    status: 500,
    code: "server_error",
    description: "is the node's own (host-network pod",
};
/// A permanent failure of IMDS (here: a resource it does not know).
const IMDS_REFUSED: Expected = Expected {
    status: 403,
    code: "forbidden",
    description: "",
};

/// Battery tests in flight, for the log scan that runs last.
static RUNNING: AtomicUsize = AtomicUsize::new(0);
/// Every access token any answer of this binary carried.
static SEEN_TOKENS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Counts a battery test as running until dropped (also when it panics), and makes sure the
/// log is captured from its first line.
struct InFlight;

impl InFlight {
    fn enter() -> Self {
        podid_testkit::capture_log(LOG_FILTER);
        RUNNING.fetch_add(1, Ordering::SeqCst);
        Self
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        RUNNING.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Keeps every `access_token` of a JSON answer (a body, an array of them, a host answer).
fn remember_tokens(value: &Value) {
    match value {
        Value::Object(fields) => {
            for (key, field) in fields {
                match (key.as_str(), field) {
                    ("access_token", Value::String(token)) => SEEN_TOKENS
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(token.clone()),
                    _ => remember_tokens(field),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(remember_tokens),
        _ => {}
    }
}

/// A 200 token answer for `client_id`.
fn expect_token(answer: &Answer, client_id: &str) {
    assert_eq!(answer.status, 200, "{}", answer.text);
    remember_tokens(&answer.json());
    assert_eq!(answer.client_id(), client_id, "{}", answer.text);
    assert!(!answer.access_token().is_empty(), "{}", answer.text);
}

/// An IMDS-shaped refusal: the status, and a body that is exactly `{"error": code,
/// "error_description": …}` with the description in it.
fn assert_refusal(answer: &Answer, expected: Expected) {
    assert_eq!(answer.status, expected.status, "{}", answer.text);
    let body = answer.json();
    let fields = body
        .as_object()
        .unwrap_or_else(|| panic!("not an IMDS error body: {:?}", answer.text));
    assert_eq!(fields.len(), 2, "{}", answer.text);
    assert_eq!(body["error"], expected.code, "{}", answer.text);
    let said = body["error_description"].as_str().unwrap_or_default();
    assert!(
        said.contains(expected.description),
        "{expected:?}: {said:?}"
    );
}

/// The one answer the HTTP server gives itself to a request it cannot read (400) or that is
/// too large (431), before any route: `status` and an empty body. It closes the connection.
fn assert_server_refused(answers: &[RawAnswer], status: u16) {
    let statuses: Vec<(u16, &str)> = answers
        .iter()
        .map(|a| (a.answer.status, a.answer.text.as_str()))
        .collect();
    assert_eq!(statuses, [(status, "")]);
}

/// Tokens the emulator has issued so far: IMDS and Entra ID token answers with status 200.
async fn tokens_issued(emu: &Emulator) -> u64 {
    let counters = emu.admin_get("/admin/counters").await;
    let Some(operations) = counters.as_object() else {
        return 0;
    };
    operations
        .iter()
        .filter(|(name, _)| name.starts_with("imds.token") || name.starts_with("entra.token"))
        .filter_map(|(_, operation)| operation["byStatus"]["200"].as_u64())
        .sum()
}

/// Waits until `check` holds for NMI's state.
async fn wait_state(nmi: &Nmi, what: &str, check: impl Fn(&NodeState) -> bool) {
    let state = nmi.app.state().clone();
    let check = &check;
    wait_for(what, WAIT, || {
        let state = state.clone();
        async move { check(&state).then_some(()) }
    })
    .await;
}

/// A Running pod `namespace/name` on `node` that holds `ip`; when it is on NMI's node, waits
/// until NMI knows it.
async fn pod_at(
    nmi: &Nmi,
    (namespace, name): (&str, &str),
    labels: &[(&str, &str)],
    node: &str,
    ip: Ipv4Addr,
) -> TestPod {
    let client = nmi.client();
    create_pod(&client, namespace, &pod_on_node(name, labels, node))
        .await
        .unwrap();
    set_pod_running(&client, namespace, name, &ip.to_string(), "127.0.0.1")
        .await
        .unwrap();
    if node == nmi.node {
        let (ns, pod) = (namespace.to_owned(), name.to_owned());
        wait_state(nmi, "NMI sees the pod at its IP", move |state| {
            state
                .pod_by_name(&ns, &pod)
                .is_ok_and(|facts| facts.ips.contains(&IpAddr::V4(ip)))
        })
        .await;
    }
    TestPod {
        name: name.to_owned(),
        namespace: namespace.to_owned(),
        ip,
        metadata: nmi.metadata,
    }
}

/// Creates an AzureIdentityBinding `name` in `namespace` for `identity` with `selector`.
async fn create_binding(nmi: &Nmi, namespace: &str, name: &str, identity: &str, selector: &str) {
    let mut binding = AzureIdentityBinding::new(
        name,
        AzureIdentityBindingSpec {
            azure_identity: Some(identity.to_owned()),
            selector: (!selector.is_empty()).then(|| selector.to_owned()),
            ..AzureIdentityBindingSpec::default()
        },
    );
    binding.metadata.namespace = Some(namespace.to_owned());
    Api::<AzureIdentityBinding>::namespaced(nmi.client(), namespace)
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
}

async fn create_identity(nmi: &Nmi, identity: &AzureIdentity) {
    let namespace = identity.metadata.namespace.as_deref().unwrap();
    Api::<AzureIdentity>::namespaced(nmi.client(), namespace)
        .create(&PostParams::default(), identity)
        .await
        .unwrap();
}

/// Deletes the namespaced object `name` of the test's namespace.
async fn delete<K>(nmi: &Nmi, name: &str)
where
    K: kube::Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Debug,
{
    Api::<K>::namespaced(nmi.client(), nmi.ns())
        .delete(name, &DeleteParams::default())
        .await
        .unwrap();
}

/// An AzurePodIdentityException in `namespace` for pods labelled `labels`.
async fn create_exception(nmi: &Nmi, namespace: &str, labels: &[(&str, &str)]) {
    let mut exception = AzurePodIdentityException::new(
        "exception",
        AzurePodIdentityExceptionSpec {
            pod_labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            ),
        },
    );
    exception.metadata.namespace = Some(namespace.to_owned());
    Api::<AzurePodIdentityException>::namespaced(nmi.client(), namespace)
        .create(&PostParams::default(), &exception)
        .await
        .unwrap();
    let ns = namespace.to_owned();
    wait_state(nmi, "NMI sees the exception", move |state| {
        !state.exceptions_in(&ns).is_empty()
    })
    .await;
}

/// A service principal identity (type 1 with a client secret, type 2 with a certificate) in the
/// test's namespace, with its Secret.
async fn service_principal(nmi: &Nmi, name: &str, kind: i64) -> AzureIdentity {
    let bytes = |data: &[u8]| ByteString(data.to_vec());
    let data = match kind {
        1 => json!({ "clientSecret": bytes(SP_SECRET.as_bytes()) }),
        _ => json!({ "certificate": bytes(P12), "password": bytes(P12_PASSWORD.as_bytes()) }),
    };
    let secret: Secret =
        serde_json::from_value(json!({ "metadata": { "name": name }, "data": data })).unwrap();
    Api::<Secret>::namespaced(nmi.client(), nmi.ns())
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    serde_json::from_value(json!({
        "apiVersion": "aadpodidentity.k8s.io/v1",
        "kind": "AzureIdentity",
        "metadata": { "name": name, "namespace": nmi.ns() },
        "spec": {
            "type": kind,
            "clientID": SP_CLIENT,
            "tenantID": TENANT,
            "clientPassword": { "name": name, "namespace": nmi.ns() },
            "adEndpoint": format!("{}/", nmi.emu.entra_base()),
        },
    }))
    .unwrap()
}

/// An answer read from a raw connection, with every header.
struct RawAnswer {
    answer: Answer,
    headers: Vec<(String, String)>,
}

impl RawAnswer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// A request as bytes: `line` (method, target, version), then `headers`, then `body`.
fn request(line: &str, headers: &[&str], body: &str) -> Vec<u8> {
    let mut text = format!("{line}\r\n");
    for header in headers {
        text.push_str(header);
        text.push_str("\r\n");
    }
    text.push_str("\r\n");
    text.push_str(body);
    text.into_bytes()
}

/// `GET target HTTP/1.1` with `Metadata: true` and `extra` headers, closing the connection.
fn get(target: &str, extra: &[&str]) -> Vec<u8> {
    let mut headers = vec!["Host: nmi", "Metadata: true"];
    headers.extend_from_slice(extra);
    headers.push("Connection: close");
    request(&format!("GET {target} HTTP/1.1"), &headers, "")
}

/// A connection from `from` to `to`.
async fn connect(from: Ipv4Addr, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(IpAddr::V4(from), 0)).unwrap();
    socket.connect(to).await.expect("NMI accepts")
}

/// Everything NMI sends until it closes the connection, as answers. A reset connection just
/// ends what is read.
async fn read_answers(stream: &mut TcpStream) -> Vec<RawAnswer> {
    let mut received = Vec::new();
    let read = tokio::time::timeout(GUARD, stream.read_to_end(&mut received)).await;
    assert!(read.is_ok(), "NMI did not close the connection");
    parse_answers(&received)
}

/// Sends `bytes` to `to` from `from` on one connection and reads every answer until NMI closes
/// it. A write NMI cut short (it answered a request too large before reading it all) is not a
/// failure.
async fn exchange(from: Ipv4Addr, to: SocketAddr, bytes: &[u8]) -> Vec<RawAnswer> {
    let mut stream = connect(from, to).await;
    let _ = stream.write_all(bytes).await;
    read_answers(&mut stream).await
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// A chunked body at the start of `rest`; returns it and what follows.
fn dechunk(mut rest: &[u8]) -> (Vec<u8>, &[u8]) {
    let mut body = Vec::new();
    while let Some(line_end) = find(rest, b"\r\n") {
        let size = String::from_utf8_lossy(&rest[..line_end]);
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        rest = &rest[line_end + 2..];
        let size = size.min(rest.len());
        body.extend_from_slice(&rest[..size]);
        rest = rest.get(size + 2..).unwrap_or_default();
        if size == 0 {
            break;
        }
    }
    (body, rest)
}

/// The HTTP/1 answers in `bytes`, in order (bodies by `Content-Length` or chunked).
fn parse_answers(mut bytes: &[u8]) -> Vec<RawAnswer> {
    let mut answers = Vec::new();
    while let Some(end) = find(bytes, b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
        let rest = &bytes[end + 4..];
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|line| line.split(' ').nth(1))
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("a status line in {head:?}"));
        let headers: Vec<(String, String)> = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
            .collect();
        let value = |name: &str| {
            headers
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(name))
                .map(|(_, value)| value.clone())
        };
        let (body, rest) = if value("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            dechunk(rest)
        } else {
            let length = value("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(rest.len())
                .min(rest.len());
            let (body, after) = rest.split_at(length);
            (body.to_vec(), after)
        };
        let answer = Answer {
            status,
            retry_after: value("retry-after"),
            location: value("location"),
            text: String::from_utf8_lossy(&body).into_owned(),
        };
        answers.push(RawAnswer { answer, headers });
        bytes = rest;
    }
    answers
}

/// The one answer of a raw exchange.
fn only(mut answers: Vec<RawAnswer>) -> RawAnswer {
    assert_eq!(answers.len(), 1, "one answer expected");
    answers.remove(0)
}

/// Two pods with their own identity each, both tokens cached; see the module's comment.
struct Scene {
    nmi: Nmi,
    /// Selected by `alice_selector`, alpha assigned.
    alice: TestPod,
    /// Selected by `bob_selector`, beta assigned.
    bob: TestPod,
    alice_selector: String,
    bob_selector: String,
    /// Tokens the emulator had issued once the scene was ready.
    issued: u64,
    _in_flight: InFlight,
}

impl Scene {
    async fn start() -> Self {
        Self::start_in(|_, _| {}).await
    }

    /// A scene whose NMI answers at the first look (E26's flags), with `change` applied to its
    /// settings (which also gets the namespace). In managed mode the identities and bindings
    /// are what serve; in standard mode the AzureAssignedIdentities.
    async fn start_in(change: impl FnOnce(&mut Settings, &str)) -> Self {
        let in_flight = InFlight::enter();
        let nmi = Nmi::start_in(|settings, ns| {
            short_wait(settings);
            change(settings, ns);
        })
        .await;
        let managed = nmi.app.state().mode() == Mode::Managed;
        let (alice_selector, bob_selector) =
            (format!("alice-{}", nmi.ns()), format!("bob-{}", nmi.ns()));
        let alpha = nmi.identity("alpha", ALPHA_CLIENT, Some(alpha_id()));
        let beta = nmi.identity("beta", BETA_CLIENT, Some(beta_id()));
        for (identity, selector) in [(&alpha, &alice_selector), (&beta, &bob_selector)] {
            let name = identity.metadata.name.clone().unwrap();
            create_binding(&nmi, nmi.ns(), &name, &name, selector).await;
            if managed {
                create_identity(&nmi, identity).await;
            }
        }
        let (ns, selectors) = (
            nmi.ns().to_owned(),
            [alice_selector.clone(), bob_selector.clone()],
        );
        wait_state(&nmi, "NMI sees the bindings", move |state| {
            match state.mode() {
                Mode::Standard => selectors.iter().all(|s| state.is_selected(s)),
                Mode::Managed => {
                    state.bindings_in(&ns).len() == 2 && state.identities_in(&ns).len() == 2
                }
            }
        })
        .await;
        let alice = nmi
            .pod("alice", &[(POD_LABEL_KEY, alice_selector.as_str())])
            .await;
        let bob = nmi
            .pod("bob", &[(POD_LABEL_KEY, bob_selector.as_str())])
            .await;
        if !managed {
            let assigned = Some(AssignedIdentityState::Assigned);
            nmi.assign(&alice, &alpha, assigned.clone()).await;
            nmi.assign(&bob, &beta, assigned).await;
        }
        expect_token(&alice.token(VAULT, "").await, ALPHA_CLIENT);
        expect_token(&bob.token(VAULT, "").await, BETA_CLIENT);
        let issued = tokens_issued(&nmi.emu).await;
        assert_eq!(issued, 2, "one token for each pod");
        Self {
            nmi,
            alice,
            bob,
            alice_selector,
            bob_selector,
            issued,
            _in_flight: in_flight,
        }
    }

    async fn managed() -> Self {
        Self::start_in(|settings, _| {
            settings.mode = Mode::Managed;
            settings.force_namespaced = true;
        })
        .await
    }

    fn ns(&self) -> &str {
        self.nmi.ns()
    }

    /// alice asks for vault with `extra` query text.
    async fn alice_asks(&self, extra: &str) -> Answer {
        self.alice.token(VAULT, extra).await
    }

    /// Asserts the refusal and that the emulator issued no token since the scene was ready.
    async fn refused(&self, answer: &Answer, expected: Expected) {
        assert_refusal(answer, expected);
        self.no_token_issued().await;
    }

    /// [`Scene::refused`] for a raw answer, whose `Content-Type` is checked too.
    async fn raw_refused(&self, answer: &RawAnswer, expected: Expected) {
        assert_eq!(
            answer.header("content-type"),
            Some(podid_nmi::JSON_CONTENT_TYPE)
        );
        self.refused(&answer.answer, expected).await;
    }

    /// `pod` gets nothing, asking for no identity in particular or for beta.
    async fn gets_nothing(&self, pod: &TestPod) {
        for extra in [String::new(), format!("&client_id={BETA_CLIENT}")] {
            let answer = pod.token(VAULT, &extra).await;
            self.refused(&answer, NOT_FOUND).await;
        }
    }

    async fn no_token_issued(&self) {
        assert_eq!(
            tokens_issued(&self.nmi.emu).await,
            self.issued,
            "the emulator issued a token during the attack"
        );
    }

    /// A token legitimately fetched during the test (a further identity primed) moves the
    /// baseline.
    async fn rebaseline(&mut self) {
        self.issued = tokens_issued(&self.nmi.emu).await;
    }

    /// A raw exchange from alice's IP with NMI's pods' port.
    async fn alice_sends(&self, bytes: &[u8]) -> Vec<RawAnswer> {
        exchange(self.alice.ip, self.nmi.metadata, bytes).await
    }

    /// A 301 to `location`, with no token issued; following it with `Metadata: true` gets the
    /// refusal for an identity alice has not.
    async fn redirected_then_refused(&self, answer: &RawAnswer, location: &str) {
        assert_eq!(answer.answer.status, 301, "{}", answer.answer.text);
        assert_eq!(answer.header("location"), Some(location));
        assert!(answer.answer.text.is_empty(), "{}", answer.answer.text);
        self.no_token_issued().await;
        let followed = self.alice.get(location, &[("Metadata", "true")]).await;
        self.refused(&followed, NOT_FOUND).await;
    }

    /// NMI still serves alice her own token (from the cache: it did not crash or lose state),
    /// the emulator issued nothing during the test, and NMI stops cleanly.
    async fn finish(self) {
        expect_token(&self.alice_asks("").await, ALPHA_CLIENT);
        self.no_token_issued().await;
        self.nmi.stop().await;
    }

    /// Another namespace on the same cluster (and node).
    async fn other_namespace(&self) -> TestNamespace {
        self.nmi.env.namespace("nmi-other").await
    }

    /// A Running pod on NMI's node with a fresh IP, in any namespace.
    async fn pod_in(&self, namespace: &str, name: &str, labels: &[(&str, &str)]) -> TestPod {
        pod_at(
            &self.nmi,
            (namespace, name),
            labels,
            &self.nmi.node,
            fresh_ip(),
        )
        .await
    }

    /// A pod of bob's workload (labelled with bob's selector) in `phase`.
    async fn bobs_replica(
        &self,
        name: &str,
        phase: &str,
        change: impl FnOnce(&mut Pod),
    ) -> TestPod {
        let labels = [(POD_LABEL_KEY, self.bob_selector.as_str())];
        self.nmi.pod_with(name, &labels, phase, change).await
    }

    /// Records beta for `pod` in `state`; returns the AzureAssignedIdentity's name.
    async fn assign_beta(&self, pod: &TestPod, state: AssignedIdentityState) -> String {
        let beta = self.nmi.identity("beta", BETA_CLIENT, Some(beta_id()));
        self.nmi.assign(pod, &beta, Some(state)).await
    }
}

// ---------------------------------------------------------------------------------------------
// Attack shapes shared by many tests.

/// alice asks for vault with each of `extras` as more query text; each is refused.
async fn alice_asks_each(extras: &[String], expected: Expected) {
    let scene = Scene::start().await;
    for extra in extras {
        scene
            .refused(&scene.alice_asks(extra).await, expected)
            .await;
    }
    scene.finish().await;
}

/// alice sends each raw request; each gets exactly one answer, refused.
async fn alice_sends_each(requests: &[Vec<u8>], expected: Expected) {
    let scene = Scene::start().await;
    for bytes in requests {
        let answer = only(scene.alice_sends(bytes).await);
        scene.raw_refused(&answer, expected).await;
    }
    scene.finish().await;
}

/// alice GETs each raw target (with `Metadata: true` and `headers`); each is refused.
async fn alice_gets_each(targets: &[String], headers: &[&str], expected: Expected) {
    let requests: Vec<Vec<u8>> = targets.iter().map(|t| get(t, headers)).collect();
    alice_sends_each(&requests, expected).await;
}

/// alice GETs each raw target (without `Metadata`: a redirect comes before any header check)
/// and is redirected to the clean token path with her query, which then refuses beta.
async fn alice_redirected_each(paths: &[&str], query: &str) {
    let scene = Scene::start().await;
    for path in paths {
        let bytes = request(
            &format!("GET {path}?{query} HTTP/1.1"),
            &["Host: nmi", "Connection: close"],
            "",
        );
        let answer = only(scene.alice_sends(&bytes).await);
        let location = format!("{TOKEN_PATH}?{query}");
        scene.redirected_then_refused(&answer, &location).await;
    }
    scene.finish().await;
}

/// The query of a request for beta.
fn beta_query() -> String {
    format!("resource={VAULT_QUERY}&client_id={BETA_CLIENT}")
}

/// Each path with `?resource=vault`.
fn with_vault(paths: &[&str]) -> Vec<String> {
    paths
        .iter()
        .map(|path| format!("{path}?resource={VAULT_QUERY}"))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Asking for another pod's identity by every selector and spelling.

#[tokio::test]
async fn another_pods_client_id() {
    alice_asks_each(&[format!("&client_id={BETA_CLIENT}")], NOT_FOUND).await;
}

#[tokio::test]
async fn another_pods_client_id_in_upper_case() {
    let upper = BETA_CLIENT.to_uppercase();
    alice_asks_each(&[format!("&client_id={upper}")], NOT_FOUND).await;
}

#[tokio::test]
async fn another_pods_client_id_with_trailing_whitespace() {
    let extras: Vec<String> = ["%20", "+", "%09", "%0A", "%C2%A0"]
        .iter()
        .map(|blank| format!("&client_id={BETA_CLIENT}{blank}"))
        .collect();
    alice_asks_each(&extras, NOT_FOUND).await;
}

#[tokio::test]
async fn another_pods_client_id_percent_encoded_byte_by_byte() {
    let encoded: String = BETA_CLIENT.bytes().map(|b| format!("%{b:02X}")).collect();
    alice_asks_each(&[format!("&client_id={encoded}")], NOT_FOUND).await;
}

#[tokio::test]
async fn another_pods_identity_double_percent_encoded() {
    // Decoded once, these are `%2F…` and `%62…`: no identity has that ID.
    let resource_id = beta_id().replace('/', "%252F");
    let client_id = format!("%2562{}", &BETA_CLIENT[1..]);
    let extras = [
        format!("&mi_res_id={resource_id}"),
        format!("&client_id={client_id}"),
    ];
    alice_asks_each(&extras, NOT_FOUND).await;
}

#[tokio::test]
async fn another_pods_msi_res_id() {
    alice_asks_each(&[format!("&msi_res_id={}", beta_id())], NOT_FOUND).await;
}

#[tokio::test]
async fn another_pods_mi_res_id_in_another_case() {
    let extras = [
        format!("&mi_res_id={}", beta_id().to_uppercase()),
        format!("&mi_res_id={}", beta_id().to_lowercase()),
    ];
    alice_asks_each(&extras, NOT_FOUND).await;
}

#[tokio::test]
async fn another_pods_resource_id() {
    alice_asks_each(&[format!("&resource_id={}", beta_id())], NOT_FOUND).await;
}

#[tokio::test]
async fn another_pods_object_id() {
    let extra = "&object_id=dddddddd-4444-4444-8444-444444444444".to_owned();
    alice_asks_each(&[extra], OBJECT_ID).await;
}

#[tokio::test]
async fn a_repeated_client_id_naming_two_identities() {
    let extras = [
        format!("&client_id={ALPHA_CLIENT}&client_id={BETA_CLIENT}"),
        format!("&client_id={BETA_CLIENT}&client_id={ALPHA_CLIENT}"),
    ];
    alice_asks_each(&extras, REPEATED).await;
}

#[tokio::test]
async fn another_pods_client_id_followed_by_an_empty_one() {
    // A reader keeping the last value would see no selector and serve alice's own; one keeping
    // the first would ask for beta. Neither: the name is repeated.
    alice_asks_each(&[format!("&client_id={BETA_CLIENT}&client_id=")], REPEATED).await;
}

#[tokio::test]
async fn own_client_id_and_another_pods_resource_id() {
    let extras: Vec<String> = ["mi_res_id", "msi_res_id", "resource_id"]
        .iter()
        .map(|name| format!("&client_id={ALPHA_CLIENT}&{name}={}", beta_id()))
        .collect();
    alice_asks_each(&extras, CONFLICTING).await;
}

#[tokio::test]
async fn an_empty_client_id_beside_another_pods_resource_id() {
    alice_asks_each(&[format!("&client_id=&mi_res_id={}", beta_id())], NOT_FOUND).await;
}

#[tokio::test]
async fn an_encoded_ampersand_smuggles_a_second_client_id() {
    let extra = format!("&client_id={ALPHA_CLIENT}%26client_id%3D{BETA_CLIENT}");
    alice_asks_each(&[extra], NOT_FOUND).await;
}

#[tokio::test]
async fn a_semicolon_separates_no_parameters() {
    let extra = format!("&client_id={BETA_CLIENT};client_id={ALPHA_CLIENT}");
    alice_asks_each(&[extra], NOT_FOUND).await;
}

#[tokio::test]
async fn another_pods_client_id_with_a_nul_byte() {
    let extras = [
        format!("&client_id={BETA_CLIENT}%00"),
        format!("&client_id=%00{BETA_CLIENT}"),
    ];
    alice_asks_each(&extras, NOT_FOUND).await;
}

#[tokio::test]
async fn a_client_id_that_is_not_utf8() {
    alice_asks_each(&[format!("&client_id={BETA_CLIENT}%FF%FE")], NOT_UTF8).await;
}

#[tokio::test]
async fn a_thousand_parameters_hide_another_pods_client_id() {
    let noise: String = (0..1000).map(|i| format!("&p{i}={i}")).collect();
    alice_asks_each(
        &[format!("{noise}&client_id={BETA_CLIENT}{noise}")],
        NOT_FOUND,
    )
    .await;
}

#[tokio::test]
async fn a_client_id_spelled_in_another_case_is_ignored() {
    // Names are case-sensitive and unknown ones ignored: alice gets only her own identity (from
    // the cache: the emulator is not asked for beta).
    let scene = Scene::start().await;
    for name in [
        "Client_Id",
        "CLIENT_ID",
        "client-id",
        "clientid",
        "client_id%20",
    ] {
        let answer = scene.alice_asks(&format!("&{name}={BETA_CLIENT}")).await;
        expect_token(&answer, ALPHA_CLIENT);
    }
    scene.finish().await;
}

#[tokio::test]
async fn a_resource_smuggling_a_client_id_to_imds() {
    // The resource goes to IMDS encoded: IMDS sees one resource (which it does not know) and
    // alice's own client ID, never a second selector.
    let scene = Scene::start().await;
    let target = format!("{TOKEN_PATH}?resource={VAULT_QUERY}%26client_id%3D{BETA_CLIENT}");
    let answer = scene.alice.get(&target, &[("Metadata", "true")]).await;
    scene.refused(&answer, IMDS_REFUSED).await;
    let journal = scene.nmi.emu.journal(Some(Surface::Imds)).await;
    let last = journal.last().and_then(|e| e["query"].as_str()).unwrap();
    let client_ids: Vec<String> = url::form_urlencoded::parse(last.as_bytes())
        .filter(|(name, _)| name == "client_id")
        .map(|(_, value)| value.into_owned())
        .collect();
    assert_eq!(client_ids, [ALPHA_CLIENT], "{last}");
    scene.finish().await;
}

#[tokio::test]
async fn a_request_body_is_never_read_as_the_query() {
    // POST with the selector in a form body: the body is ignored, alice gets her own identity.
    let scene = Scene::start().await;
    let body = format!("client_id={BETA_CLIENT}&resource={VAULT_QUERY}");
    let length = format!("Content-Length: {}", body.len());
    let headers = [
        "Host: nmi",
        "Metadata: true",
        "Content-Type: application/x-www-form-urlencoded",
        &length,
        "Connection: close",
    ];
    let bytes = request(&format!("POST {TOKEN} HTTP/1.1"), &headers, &body);
    let answer = only(scene.alice_sends(&bytes).await);
    expect_token(&answer.answer, ALPHA_CLIENT);
    scene.finish().await;
}

// ---------------------------------------------------------------------------------------------
// Headers claiming another caller, and the metadata header.

#[tokio::test]
async fn x_forwarded_for_naming_another_pod() {
    let scene = Scene::start().await;
    let bob_ip = scene.bob.ip.to_string();
    let headers = [("Metadata", "true"), ("X-Forwarded-For", bob_ip.as_str())];
    let answer = scene.alice.get(&token_for_beta(), &headers).await;
    scene.refused(&answer, FORWARDED).await;
    scene.finish().await;
}

#[tokio::test]
async fn an_empty_x_forwarded_for_in_lower_case() {
    alice_gets_each(&[token_for_beta()], &["x-forwarded-for:"], FORWARDED).await;
}

#[tokio::test]
async fn x_real_ip_naming_another_pod() {
    let scene = Scene::start().await;
    let bob_ip = scene.bob.ip.to_string();
    let headers = [("Metadata", "true"), ("X-Real-IP", bob_ip.as_str())];
    let answer = scene.alice.get(&token_for_beta(), &headers).await;
    scene.refused(&answer, NOT_FOUND).await;
    scene.finish().await;
}

#[tokio::test]
async fn every_client_ip_header_naming_another_pod_from_a_pod_without_identity() {
    let scene = Scene::start().await;
    let mallory = scene.nmi.pod("mallory", &[]).await;
    let bob_ip = scene.bob.ip.to_string();
    let forwarded = format!("for={bob_ip};proto=http;by={bob_ip}");
    let mut headers = vec![("Metadata", "true"), ("Forwarded", forwarded.as_str())];
    for name in [
        "X-Real-IP",
        "X-Client-IP",
        "True-Client-IP",
        "X-Original-Forwarded-For",
        "X-Cluster-Client-IP",
        "Client-IP",
    ] {
        headers.push((name, bob_ip.as_str()));
    }
    headers.extend([("podns", scene.ns()), ("podname", "bob")]);
    let answer = mallory.get(TOKEN, &headers).await;
    scene.refused(&answer, NO_IDENTITY).await;
    scene.finish().await;
}

#[tokio::test]
async fn a_pod_wearing_another_pods_label_without_an_assignment() {
    // The controller has not assigned anything to mallory: NMI serves only what is assigned.
    let scene = Scene::start().await;
    let mallory = scene.bobs_replica("mallory", "Running", |_| {}).await;
    scene.gets_nothing(&mallory).await;
    scene.finish().await;
}

#[tokio::test]
async fn no_metadata_header() {
    let scene = Scene::start().await;
    let answer = scene.alice.get(&token_for_beta(), &[]).await;
    scene.refused(&answer, NO_METADATA).await;
    scene.finish().await;
}

#[tokio::test]
async fn metadata_header_false_or_empty() {
    let headers = [
        "Metadata: false",
        "Metadata: 0",
        "Metadata:",
        "Metadata: yes",
    ];
    let requests: Vec<Vec<u8>> = headers
        .iter()
        .map(|header| request(&format!("GET {TOKEN} HTTP/1.1"), &["Host: nmi", header], ""))
        .map(|bytes| [bytes, get(TOKEN, &[])].concat())
        .collect();
    // Each request is followed by a plain one on the same connection: that one is served.
    let scene = Scene::start().await;
    for bytes in &requests {
        let answers = scene.alice_sends(bytes).await;
        assert_eq!(answers.len(), 2);
        scene.raw_refused(&answers[0], NO_METADATA).await;
        expect_token(&answers[1].answer, ALPHA_CLIENT);
    }
    scene.finish().await;
}

#[tokio::test]
async fn metadata_header_true_in_another_case() {
    // (A trailing blank is not part of a header value in HTTP, so `true ` is `true`.)
    let requests: Vec<Vec<u8>> = [
        "Metadata: True",
        "Metadata: TRUE",
        "Metadata: \"true\"",
        "Metadata: true,true",
    ]
    .iter()
    .map(|header| {
        request(
            &format!("GET {TOKEN} HTTP/1.1"),
            &["Host: nmi", header, "Connection: close"],
            "",
        )
    })
    .collect();
    alice_sends_each(&requests, NO_METADATA).await;
}

#[tokio::test]
async fn a_second_metadata_header_saying_true() {
    let headers = [
        "Host: nmi",
        "Metadata: false",
        "Metadata: true",
        "Connection: close",
    ];
    let bytes = request(&format!("GET {TOKEN} HTTP/1.1"), &headers, "");
    alice_sends_each(&[bytes], NO_METADATA).await;
}

#[tokio::test]
async fn a_metadata_header_folded_over_two_lines() {
    // Obsolete line folding is not HTTP any more: the server refuses the request itself.
    let scene = Scene::start().await;
    let headers = ["Host: nmi", "Metadata:", " true", "Connection: close"];
    let bytes = request(&format!("GET {} HTTP/1.1", token_for_beta()), &headers, "");
    assert_server_refused(&scene.alice_sends(&bytes).await, 400);
    scene.no_token_issued().await;
    scene.finish().await;
}

#[tokio::test]
async fn crlf_encoded_in_the_query_is_no_metadata_header() {
    let scene = Scene::start().await;
    let target = format!("{TOKEN}%0D%0AMetadata:%20true%0D%0A&client_id={BETA_CLIENT}");
    let answer = scene.alice.get(&target, &[]).await;
    scene.refused(&answer, NO_METADATA).await;
    scene.finish().await;
}

#[tokio::test]
async fn crlf_in_a_redirected_query_injects_no_header() {
    let scene = Scene::start().await;
    let query = format!("resource=x%0D%0ASet-Cookie:%20injected=1%0D%0A&client_id={BETA_CLIENT}");
    let bytes = get(&format!("/{TOKEN_PATH}?{query}"), &[]);
    let answer = only(scene.alice_sends(&bytes).await);
    assert!(
        answer.header("set-cookie").is_none(),
        "{:?}",
        answer.headers
    );
    let location = format!("{TOKEN_PATH}?{query}");
    scene.redirected_then_refused(&answer, &location).await;
    scene.finish().await;
}

#[tokio::test]
async fn a_bare_carriage_return_in_a_header_value() {
    let scene = Scene::start().await;
    let headers = [
        "Host: nmi",
        "X-Note: a\rMetadata: true",
        "Connection: close",
    ];
    let bytes = request(&format!("GET {} HTTP/1.1", token_for_beta()), &headers, "");
    assert_server_refused(&scene.alice_sends(&bytes).await, 400);
    scene.no_token_issued().await;
    scene.finish().await;
}

#[tokio::test]
async fn a_host_header_naming_the_host_listener() {
    let scene = Scene::start().await;
    let host = format!("Host: {}", scene.nmi.host);
    let podns = format!("podns: {}", scene.ns());
    let headers = [
        host.as_str(),
        &podns,
        "podname: bob",
        "Metadata: true",
        "Connection: close",
    ];
    let bytes = request(
        &format!("GET /host/token?resource={VAULT_QUERY} HTTP/1.1"),
        &headers,
        "",
    );
    let answer = only(scene.alice_sends(&bytes).await);
    scene.raw_refused(&answer, NO_ENDPOINT).await;
    scene.finish().await;
}

// ---------------------------------------------------------------------------------------------
// Path spellings (sent as raw bytes: a URL library would normalize them first).

#[tokio::test]
async fn dot_dot_back_into_the_token_path() {
    alice_redirected_each(&["/metadata/identity/oauth2/token/../token"], &beta_query()).await;
}

#[tokio::test]
async fn a_double_leading_slash() {
    alice_redirected_each(&["//metadata/identity/oauth2/token"], &beta_query()).await;
}

#[tokio::test]
async fn percent_encoded_dot_dot_segments() {
    let paths = [
        "/metadata/instance/%2e%2e/identity/oauth2/token",
        "/metadata/identity/oauth2/%2E%2E/oauth2/./token",
        "/x/%2e%2e/metadata/identity/oauth2/token",
    ];
    alice_redirected_each(&paths, &beta_query()).await;
}

#[tokio::test]
async fn metadata_in_upper_case_is_the_token_endpoint_and_still_checks_the_caller() {
    let target = format!("/METADATA/identity/oauth2/token?{}", beta_query());
    alice_gets_each(&[target], &[], NOT_FOUND).await;
}

#[tokio::test]
async fn the_rest_of_the_token_path_in_another_case() {
    let paths = [
        "/metadata/IDENTITY/oauth2/token",
        "/metadata/identity/OAuth2/token",
        "/metadata/identity/oauth2/Token",
    ];
    alice_gets_each(&with_vault(&paths), &[], LOOKALIKE).await;
}

#[tokio::test]
async fn a_trailing_slash() {
    let target = format!("{TOKEN_PATH}/?{}", beta_query());
    alice_gets_each(&[target], &[], NOT_FOUND).await;
}

#[tokio::test]
async fn path_parameters_after_a_semicolon() {
    let with_client = format!("{TOKEN_PATH};client_id={BETA_CLIENT}");
    let paths = [
        with_client.as_str(),
        "/metadata/identity/oauth2/token;",
        "/metadata/identity;x=y/oauth2/token",
    ];
    alice_gets_each(&with_vault(&paths), &[], LOOKALIKE).await;
}

/// Token paths broken between `metadata` and `identity` by what some servers drop when they
/// normalize a path: a path parameter (servlet containers strip `;…`), a NUL (C strings end
/// there), trailing blanks and dots (Windows drops them from a segment). NMI's lookalike rule
/// starts at `/metadata/identity`, so these are proxied to IMDS with `Metadata: true`: one such
/// normalization on the IMDS side would serve the node's identities (the emulator does not
/// normalize, so it issues no token). Every case is listed.
#[tokio::test]
async fn token_paths_broken_between_metadata_and_identity_never_reach_imds() {
    let scene = Scene::start().await;
    let mut reached = Vec::new();
    for path in [
        "/metadata;x=y/identity/oauth2/token",
        "/metadata;/identity/oauth2/token",
        "/metadata%00/identity/oauth2/token",
        "/metadata%20/identity/oauth2/token",
        "/metadata%09/identity/oauth2/token",
        "/metadata./identity/oauth2/token",
    ] {
        let before = scene.nmi.emu.journal(Some(Surface::Imds)).await.len();
        let bytes = get(&format!("{path}?{}", beta_query()), &[]);
        let answer = only(scene.alice_sends(&bytes).await);
        scene.no_token_issued().await;
        assert!(!answer.answer.text.contains("access_token"));
        let proxied = scene.nmi.emu.journal(Some(Surface::Imds)).await.len() > before;
        if proxied || answer.answer.status != 400 {
            let how = if proxied { " (proxied to IMDS)" } else { "" };
            let (status, text) = (answer.answer.status, &answer.answer.text);
            reached.push(format!("{path}: {status} {text}{how}"));
        }
    }
    assert!(
        reached.is_empty(),
        "token path spellings not refused as lookalikes:\n{}",
        reached.join("\n")
    );
    scene.finish().await;
}

#[tokio::test]
async fn percent_encoded_slashes_are_the_token_endpoint_and_still_check_the_caller() {
    let target = format!("/metadata%2Fidentity%2Foauth2%2ftoken?{}", beta_query());
    alice_gets_each(&[target], &[], NOT_FOUND).await;
}

#[tokio::test]
async fn a_percent_encoded_question_mark_in_the_path() {
    let path = format!("{TOKEN_PATH}%3Fclient_id={BETA_CLIENT}");
    alice_gets_each(&with_vault(&[&path]), &[], LOOKALIKE).await;
}

#[tokio::test]
async fn percent_encoded_backslashes() {
    let paths = [
        "/metadata%5Cidentity%5Coauth2%5Ctoken",
        "/%5Cmetadata/identity/oauth2/token",
        "/x%5C..%5Cmetadata/identity/oauth2/token",
    ];
    alice_gets_each(&with_vault(&paths), &[], LOOKALIKE).await;
}

#[tokio::test]
async fn a_kelvin_sign_for_the_k_of_token() {
    // It lower-cases to `k`: a lookalike (docs/nmi.md).
    let paths = ["/metadata/identity/oauth2/to%E2%84%AAen"];
    alice_gets_each(&with_vault(&paths), &[], LOOKALIKE).await;
}

#[tokio::test]
async fn letters_that_fold_to_no_ascii_letter_reach_imds_which_has_no_such_path() {
    // A dotless i and a full-width t: proxied, and IMDS answers 404.
    let scene = Scene::start().await;
    for path in [
        "/metadata/%C4%B1dentity/oauth2/token",
        "/metadata/identity/oauth2/%EF%BD%94oken",
    ] {
        let answer = only(
            scene
                .alice_sends(&get(&format!("{path}?{}", beta_query()), &[]))
                .await,
        );
        assert_eq!(answer.answer.status, 404, "{path}: {}", answer.answer.text);
        assert!(!answer.answer.text.contains("access_token"));
        scene.no_token_issued().await;
    }
    scene.finish().await;
}

#[tokio::test]
async fn a_nul_byte_in_the_path() {
    let paths = [
        "/metadata/identity/oauth2/token%00",
        "/metadata/identity%00/oauth2/token",
    ];
    alice_gets_each(&with_vault(&paths), &[], LOOKALIKE).await;
}

#[tokio::test]
async fn a_malformed_escape_in_the_path() {
    let paths = [
        "/metadata/identity/oauth2/tok%zzen",
        "/metadata/identity/oauth2/token%",
        "/metadata/identity/oauth2/token%4",
    ];
    alice_gets_each(&with_vault(&paths), &[], BAD_ESCAPE).await;
}

#[tokio::test]
async fn an_absolute_form_request_target() {
    // `GET http://other/…`: NMI judges the path and the socket, whatever authority is named.
    let target = format!("http://imds.attacker.invalid{}", token_for_beta());
    alice_gets_each(
        &[target],
        &["X-Authority: imds.attacker.invalid"],
        NOT_FOUND,
    )
    .await;
}

#[tokio::test]
async fn an_absolute_form_request_target_with_dot_segments() {
    let path = "http://imds.attacker.invalid/metadata/instance/../identity/oauth2/token";
    alice_redirected_each(&[path], &beta_query()).await;
}

#[tokio::test]
async fn http_1_0_without_a_host() {
    let bytes = request(
        &format!("GET {} HTTP/1.0", token_for_beta()),
        &["Metadata: true"],
        "",
    );
    alice_sends_each(&[bytes], NOT_FOUND).await;
}

#[tokio::test]
async fn host_token_on_the_pods_port() {
    let paths = [
        "/host/token",
        "/host/token/",
        "/host/tokens",
        "/host/%74oken",
    ];
    let podns = format!("podns: {}", unique_name("any"));
    alice_gets_each(&with_vault(&paths), &[&podns, "podname: bob"], NO_ENDPOINT).await;
}

#[tokio::test]
async fn host_token_with_extra_slashes_on_the_pods_port() {
    let scene = Scene::start().await;
    let query = format!("resource={VAULT_QUERY}");
    let podns = format!("podns: {}", scene.ns());
    let headers = [podns.as_str(), "podname: bob"];
    let answer = only(
        scene
            .alice_sends(&get(&format!("/host//token?{query}"), &headers))
            .await,
    );
    assert_eq!(answer.answer.status, 301, "{}", answer.answer.text);
    let location = answer.header("location").unwrap().to_owned();
    assert_eq!(location, format!("/host/token?{query}"));
    let followed = only(scene.alice_sends(&get(&location, &headers)).await);
    scene.raw_refused(&followed, NO_ENDPOINT).await;
    scene.finish().await;
}

#[tokio::test]
async fn host_token_in_upper_case_goes_to_imds_which_issues_nothing() {
    // Not the host endpoint (case-sensitive, as upstream): proxied to the machine's IMDS, which
    // has no such path.
    let scene = Scene::start().await;
    let podns = format!("podns: {}", scene.ns());
    let bytes = get(
        &format!("/HOST/token?resource={VAULT_QUERY}"),
        &[&podns, "podname: bob"],
    );
    let answer = only(scene.alice_sends(&bytes).await);
    assert_eq!(answer.answer.status, 404, "{}", answer.answer.text);
    assert!(!answer.answer.text.contains("access_token"));
    scene.no_token_issued().await;
    scene.finish().await;
}

// ---------------------------------------------------------------------------------------------
// Pods, assignments, bindings and identities.

#[tokio::test]
async fn a_pod_of_the_same_name_in_another_namespace() {
    let scene = Scene::start().await;
    let other = scene.other_namespace().await;
    let labels = [(POD_LABEL_KEY, scene.alice_selector.as_str())];
    let twin = scene.pod_in(other.name(), "alice", &labels).await;
    let answer = twin
        .token(VAULT, &format!("&client_id={ALPHA_CLIENT}"))
        .await;
    scene.refused(&answer, NOT_FOUND).await;
    scene.gets_nothing(&twin).await;
    scene.finish().await;
}

#[tokio::test]
async fn an_assignment_for_a_pod_of_the_same_name_in_another_namespace() {
    // A legacy AzureAssignedIdentity (no status: served at once) for `<other>/alice` with beta.
    let scene = Scene::start().await;
    let other = scene.other_namespace().await;
    let elsewhere = TestPod {
        namespace: other.name().to_owned(),
        ..scene.alice.clone_for_task()
    };
    let beta = scene
        .nmi
        .identity("beta-elsewhere", BETA_CLIENT, Some(beta_id()));
    scene.nmi.assign(&elsewhere, &beta, None).await;
    scene
        .refused(
            &scene.alice_asks(&format!("&client_id={BETA_CLIENT}")).await,
            NOT_FOUND,
        )
        .await;
    scene.finish().await;
}

#[tokio::test]
async fn the_label_removed_while_the_token_is_cached() {
    // Only an identity whose binding selects the pod's label may serve it, and "a relabelled
    // pod is refused at once" (docs/nmi.md, token cache). Standard mode here has no MIC to
    // delete the assignment: NMI alone must stop serving bob (his token is cached).
    let scene = Scene::start().await;
    let unlabel = json!({"metadata": {"labels": {POD_LABEL_KEY: null}}});
    Api::<Pod>::namespaced(scene.nmi.client(), scene.ns())
        .patch("bob", &PatchParams::default(), &Patch::Merge(&unlabel))
        .await
        .unwrap();
    let ns = scene.ns().to_owned();
    wait_state(&scene.nmi, "NMI sees bob without the label", move |state| {
        state
            .pod_by_name(&ns, "bob")
            .is_ok_and(|pod| !pod.labels.contains_key(POD_LABEL_KEY))
    })
    .await;
    scene.gets_nothing(&scene.bob).await;
    scene.finish().await;
}

#[tokio::test]
async fn the_binding_deleted_while_the_token_is_cached() {
    // As above: no binding selects bob any more, and NMI watches the bindings' selectors.
    let scene = Scene::start().await;
    delete::<AzureIdentityBinding>(&scene.nmi, "beta").await;
    let selector = scene.bob_selector.clone();
    wait_state(&scene.nmi, "NMI sees the binding gone", move |state| {
        !state.is_selected(&selector)
    })
    .await;
    scene.gets_nothing(&scene.bob).await;
    scene.finish().await;
}

#[tokio::test]
async fn the_assignment_deleted_while_the_token_is_cached() {
    let scene = Scene::start().await;
    let name = podid_api::names::assigned_identity_name("bob", scene.ns(), "beta");
    delete::<AzureAssignedIdentity>(&scene.nmi, &name).await;
    scene.nmi.wait_assigned_count(&scene.bob, |n| n == 0).await;
    scene.gets_nothing(&scene.bob).await;
    scene.finish().await;
}

#[tokio::test]
async fn an_assignment_still_created() {
    // carol is another replica of bob's workload; her assignment is not yet on the machine.
    let scene = Scene::start().await;
    let carol = scene.bobs_replica("carol", "Running", |_| {}).await;
    scene
        .assign_beta(&carol, AssignedIdentityState::Created)
        .await;
    scene.refused(&carol.token(VAULT, "").await, NOT_YET).await;
    scene.finish().await;
}

#[tokio::test]
async fn an_assignment_unassigned() {
    let scene = Scene::start().await;
    let carol = scene.bobs_replica("carol", "Running", |_| {}).await;
    scene
        .assign_beta(&carol, AssignedIdentityState::Unassigned)
        .await;
    scene.gets_nothing(&carol).await;
    scene.finish().await;
}

#[tokio::test]
async fn an_assignment_recorded_for_another_node() {
    // Labelled for this node (so NMI watches it) but naming another node in its spec.
    let scene = Scene::start().await;
    let name = scene
        .assign_beta(&scene.alice, AssignedIdentityState::Assigned)
        .await;
    let moved = json!({"spec": {"nodename": "another-node"}});
    Api::<AzureAssignedIdentity>::namespaced(scene.nmi.client(), scene.ns())
        .patch(&name, &PatchParams::default(), &Patch::Merge(&moved))
        .await
        .unwrap();
    let ns = scene.ns().to_owned();
    wait_state(&scene.nmi, "NMI sees the other node", move |state| {
        state.assigned_to(&ns, "alice").iter().any(|aai| {
            aai.metadata.name.as_deref() == Some(name.as_str())
                && aai.spec.node_name.as_deref() == Some("another-node")
        })
    })
    .await;
    scene
        .refused(
            &scene.alice_asks(&format!("&client_id={BETA_CLIENT}")).await,
            NOT_FOUND,
        )
        .await;
    scene.finish().await;
}

/// alice has beta assigned, but beta is an identity of namespace `elsewhere` that NMI must
/// not serve outside it (`--forceNamespaced`, or the namespaced annotation).
async fn foreign_identity_assigned(force_namespaced: bool, annotated: bool) {
    let scene = Scene::start_in(|settings, _| settings.force_namespaced = force_namespaced).await;
    let mut beta = scene.nmi.identity("beta", BETA_CLIENT, Some(beta_id()));
    beta.metadata.namespace = Some("elsewhere".into());
    if annotated {
        let annotation = (
            BEHAVIOR_ANNOTATION.to_owned(),
            BEHAVIOR_NAMESPACED.to_owned(),
        );
        beta.metadata.annotations = Some([annotation].into());
    }
    let assigned = Some(AssignedIdentityState::Assigned);
    scene.nmi.assign(&scene.alice, &beta, assigned).await;
    for extra in [
        format!("&client_id={BETA_CLIENT}"),
        format!("&mi_res_id={}", beta_id()),
    ] {
        scene
            .refused(&scene.alice_asks(&extra).await, NOT_FOUND)
            .await;
    }
    scene.finish().await;
}

#[tokio::test]
async fn an_identity_of_another_namespace_with_force_namespaced() {
    foreign_identity_assigned(true, false).await;
}

#[tokio::test]
async fn a_namespaced_identity_of_another_namespace() {
    foreign_identity_assigned(false, true).await;
}

/// A pod `victim` with a service principal of `kind` assigned, its token fetched once (cached);
/// alice then asks for it.
async fn service_principal_of_another_pod(kind: i64) {
    let mut scene = Scene::start().await;
    let victim = scene.nmi.pod("victim", &[(POD_LABEL_KEY, "victim")]).await;
    let identity = service_principal(&scene.nmi, &format!("sp-{kind}"), kind).await;
    let assigned = Some(AssignedIdentityState::Assigned);
    scene.nmi.assign(&victim, &identity, assigned).await;
    expect_token(&victim.token(VAULT, "").await, SP_CLIENT);
    scene.rebaseline().await;
    let asked = scene.alice_asks(&format!("&client_id={SP_CLIENT}")).await;
    scene.refused(&asked, NOT_FOUND).await;
    // Unspecified: alice's own, never the service principal.
    expect_token(&scene.alice_asks("").await, ALPHA_CLIENT);
    scene.finish().await;
}

#[tokio::test]
async fn another_pods_service_principal_with_a_secret() {
    service_principal_of_another_pod(1).await;
}

#[tokio::test]
async fn another_pods_service_principal_with_a_certificate() {
    service_principal_of_another_pod(2).await;
}

#[tokio::test]
async fn a_host_network_pod_with_an_assignment() {
    let scene = Scene::start().await;
    let hostnet = scene
        .bobs_replica("hostnet", "Running", |pod| {
            pod.spec.as_mut().unwrap().host_network = Some(true);
        })
        .await;
    scene
        .assign_beta(&hostnet, AssignedIdentityState::Assigned)
        .await;
    scene
        .refused(&hostnet.token(VAULT, "").await, HOST_NETWORK)
        .await;
    scene.finish().await;
}

#[tokio::test]
async fn a_second_pod_claiming_another_pods_ip() {
    let scene = Scene::start().await;
    pod_at(
        &scene.nmi,
        (scene.ns(), "twin"),
        &[],
        &scene.nmi.node,
        scene.bob.ip,
    )
    .await;
    let answer = scene.bob.token(VAULT, "").await;
    scene.refused(&answer, SEVERAL_PODS).await;
    let said = answer.json()["error_description"].to_string();
    assert!(said.contains("/bob") && said.contains("/twin"), "{said}");
    scene.finish().await;
}

#[tokio::test]
async fn a_pod_on_another_node() {
    let scene = Scene::start().await;
    let labels = [(POD_LABEL_KEY, scene.bob_selector.as_str())];
    let elsewhere = pod_at(
        &scene.nmi,
        (scene.ns(), "elsewhere"),
        &labels,
        "another-node",
        fresh_ip(),
    )
    .await;
    scene
        .refused(&elsewhere.token(VAULT, "").await, NO_POD)
        .await;
    scene.finish().await;
}

#[tokio::test]
async fn a_succeeded_pods_ip_reused_by_a_pod_without_identity() {
    let scene = Scene::start().await;
    let done = scene.bobs_replica("done", "Succeeded", |_| {}).await;
    scene
        .assign_beta(&done, AssignedIdentityState::Assigned)
        .await;
    let reuser = pod_at(
        &scene.nmi,
        (scene.ns(), "reuser"),
        &[],
        &scene.nmi.node,
        done.ip,
    )
    .await;
    scene
        .refused(&reuser.token(VAULT, "").await, NO_IDENTITY)
        .await;
    scene.gets_nothing(&reuser).await;
    scene.finish().await;
}

#[tokio::test]
async fn a_failed_pod_still_holding_its_ip() {
    let scene = Scene::start().await;
    let failed = scene.bobs_replica("failed", "Failed", |_| {}).await;
    scene
        .assign_beta(&failed, AssignedIdentityState::Assigned)
        .await;
    scene.refused(&failed.token(VAULT, "").await, NO_POD).await;
    scene.finish().await;
}

#[tokio::test]
async fn a_deleted_pods_ip_reused_while_its_assignment_remains() {
    let scene = Scene::start().await;
    delete_pod_now(&scene.nmi.client(), scene.ns(), "bob")
        .await
        .unwrap();
    let ns = scene.ns().to_owned();
    wait_state(&scene.nmi, "NMI forgets bob", move |state| {
        state.pod_by_name(&ns, "bob").is_err()
    })
    .await;
    let reuser = pod_at(
        &scene.nmi,
        (scene.ns(), "reuser"),
        &[],
        &scene.nmi.node,
        scene.bob.ip,
    )
    .await;
    scene.gets_nothing(&reuser).await;
    scene.finish().await;
}

#[tokio::test]
async fn an_ip_no_pod_holds() {
    let scene = Scene::start().await;
    let stranger = TestPod {
        ip: fresh_ip(),
        ..scene.bob.clone_for_task()
    };
    let answer = stranger
        .token(VAULT, &format!("&client_id={BETA_CLIENT}"))
        .await;
    scene.refused(&answer, NO_POD).await;
    scene.finish().await;
}

#[tokio::test]
async fn an_ip_the_pod_no_longer_holds() {
    let scene = Scene::start().await;
    let moved_to = fresh_ip();
    let client = scene.nmi.client();
    set_pod_running(
        &client,
        scene.ns(),
        "bob",
        &moved_to.to_string(),
        "127.0.0.1",
    )
    .await
    .unwrap();
    let ns = scene.ns().to_owned();
    wait_state(&scene.nmi, "NMI sees bob's new IP", move |state| {
        state
            .pod_by_name(&ns, "bob")
            .is_ok_and(|pod| pod.ips == [IpAddr::V4(moved_to)])
    })
    .await;
    scene
        .refused(&scene.bob.token(VAULT, "").await, NO_POD)
        .await;
    let bob = TestPod {
        ip: moved_to,
        ..scene.bob.clone_for_task()
    };
    expect_token(&bob.token(VAULT, "").await, BETA_CLIENT);
    scene.finish().await;
}

#[tokio::test]
async fn an_exception_of_another_namespace() {
    let scene = Scene::start().await;
    let other = scene.other_namespace().await;
    create_exception(&scene.nmi, other.name(), &[("thispod", "except")]).await;
    let copycat = scene.nmi.pod("copycat", &[("thispod", "except")]).await;
    scene.gets_nothing(&copycat).await;
    scene.finish().await;
}

#[tokio::test]
async fn an_exception_label_key_in_another_case_or_swapped_with_its_value() {
    let scene = Scene::start().await;
    create_exception(&scene.nmi, scene.ns(), &[("thispod", "except")]).await;
    for labels in [[("ThisPod", "except")], [("except", "thispod")]] {
        let copycat = scene.nmi.pod(&unique_name("copycat"), &labels).await;
        scene.gets_nothing(&copycat).await;
    }
    scene.finish().await;
}

#[tokio::test]
async fn a_controller_lookalike_outside_the_mic_namespace() {
    // `--MICNamespace` is `default`; this pod's ReplicaSet is called like MIC's.
    let scene = Scene::start().await;
    let lookalike = scene
        .nmi
        .pod_with("mic-5d4f-x", &[], "Running", |pod| {
            owned_by_replica_set(pod, "mic-5d4f");
        })
        .await;
    scene.gets_nothing(&lookalike).await;
    scene.finish().await;
}

#[tokio::test]
async fn a_controller_lookalike_not_owned_by_a_replica_set() {
    let scene = Scene::start_in(|settings, ns| settings.mic_namespace = ns.to_owned()).await;
    let lookalike = scene
        .nmi
        .pod_with("mic-0", &[], "Running", |pod| {
            owned_by_replica_set(pod, "mic-abc");
            for owner in pod.metadata.owner_references.iter_mut().flatten() {
                owner.kind = "StatefulSet".into();
            }
        })
        .await;
    scene.gets_nothing(&lookalike).await;
    scene.finish().await;
}

// ---------------------------------------------------------------------------------------------
// Managed mode: NMI matches bindings and identities itself.

#[tokio::test]
async fn managed_a_pod_of_another_namespace_wearing_the_bound_label() {
    let scene = Scene::managed().await;
    let other = scene.other_namespace().await;
    let labels = [(POD_LABEL_KEY, scene.bob_selector.as_str())];
    let outsider = scene.pod_in(other.name(), "outsider", &labels).await;
    scene.gets_nothing(&outsider).await;
    scene.finish().await;
}

/// Managed mode with a third binding in the test's namespace, `selector` → `identity`.
async fn managed_with_binding(identity: &str, selector: &str) -> Scene {
    let scene = Scene::managed().await;
    create_binding(&scene.nmi, scene.ns(), "third", identity, selector).await;
    let ns = scene.ns().to_owned();
    wait_state(&scene.nmi, "NMI sees the binding", move |state| {
        state.bindings_in(&ns).len() == 3
    })
    .await;
    scene
}

#[tokio::test]
async fn managed_a_binding_naming_an_identity_of_another_namespace() {
    let scene = managed_with_binding("gamma", "gamma").await;
    let other = scene.other_namespace().await;
    let mut gamma = scene.nmi.identity("gamma", BETA_CLIENT, Some(beta_id()));
    gamma.metadata.namespace = Some(other.name().to_owned());
    create_identity(&scene.nmi, &gamma).await;
    let carol = scene.nmi.pod("carol", &[(POD_LABEL_KEY, "gamma")]).await;
    scene
        .refused(&carol.token(VAULT, "").await, NO_IDENTITY)
        .await;
    scene.gets_nothing(&carol).await;
    scene.finish().await;
}

#[tokio::test]
async fn managed_an_unlabelled_pod_and_a_binding_without_selector() {
    let scene = managed_with_binding("beta", "").await;
    let mallory = scene.nmi.pod("mallory", &[]).await;
    scene.gets_nothing(&mallory).await;
    scene.finish().await;
}

#[tokio::test]
async fn managed_the_binding_deleted_while_the_token_is_cached() {
    let scene = Scene::managed().await;
    delete::<AzureIdentityBinding>(&scene.nmi, "beta").await;
    let ns = scene.ns().to_owned();
    wait_state(&scene.nmi, "NMI sees the binding gone", move |state| {
        state.bindings_in(&ns).len() == 1
    })
    .await;
    scene.gets_nothing(&scene.bob).await;
    scene.finish().await;
}

#[tokio::test]
async fn managed_the_identity_deleted_while_the_token_is_cached() {
    let scene = Scene::managed().await;
    delete::<AzureIdentity>(&scene.nmi, "beta").await;
    let ns = scene.ns().to_owned();
    wait_state(&scene.nmi, "NMI sees the identity gone", move |state| {
        state.identities_in(&ns).len() == 1
    })
    .await;
    scene.gets_nothing(&scene.bob).await;
    scene.finish().await;
}

// ---------------------------------------------------------------------------------------------
// Malformed and hostile HTTP: never a token, never a crash.

/// alice sends each malformed request: the HTTP server refuses it with `status` itself, no
/// token is issued, and NMI goes on serving.
async fn alice_sends_malformed(requests: &[Vec<u8>], status: u16) {
    let scene = Scene::start().await;
    for bytes in requests {
        assert_server_refused(&scene.alice_sends(bytes).await, status);
        scene.no_token_issued().await;
    }
    scene.finish().await;
}

#[tokio::test]
async fn a_query_of_a_mebibyte() {
    let padding = "a".repeat(1 << 20);
    alice_sends_malformed(
        &[get(&format!("{}&p={padding}", token_for_beta()), &[])],
        431,
    )
    .await;
}

#[tokio::test]
async fn a_header_of_a_hundred_kibibytes() {
    let header = format!("X-Padding: {}", "a".repeat(100 << 10));
    alice_gets_each(&[token_for_beta()], &[&header], NOT_FOUND).await;
}

#[tokio::test]
async fn too_many_headers() {
    let headers: Vec<String> = (0..500).map(|i| format!("X-H{i}: {i}")).collect();
    let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
    alice_sends_malformed(&[get(&token_for_beta(), &headers)], 431).await;
}

#[tokio::test]
async fn raw_bytes_that_are_not_utf8_or_nul_in_the_request() {
    let tail = b" HTTP/1.1\r\nHost: nmi\r\nMetadata: true\r\nConnection: close\r\n\r\n";
    let line = |target: &[u8]| [b"GET ".as_slice(), target, tail].concat();
    let requests = [
        line(b"/metadata/identity/oauth2/tok\xffen?resource=x"),
        line(&[format!("{TOKEN}&client_id=").as_bytes(), b"\xfe\xff"].concat()),
        line(&[token_for_beta().as_bytes(), b"\0"].concat()),
        [
            format!("GET {} HTTP/1.1\r\n", token_for_beta()).as_bytes(),
            b"Host: nmi\r\nMetadata: true\0\r\nConnection: close\r\n\r\n",
        ]
        .concat(),
    ];
    alice_sends_malformed(&requests, 400).await;
}

#[tokio::test]
async fn a_bare_carriage_return_or_line_feed_in_the_request_line() {
    let requests = [
        format!(
            "GET {TOKEN}\r&client_id={BETA_CLIENT} HTTP/1.1\r\nHost: nmi\r\nMetadata: true\r\n\r\n"
        ),
        format!(
            "GET {TOKEN}\n&client_id={BETA_CLIENT} HTTP/1.1\r\nHost: nmi\r\nMetadata: true\r\n\r\n"
        ),
    ];
    let requests: Vec<Vec<u8>> = requests.into_iter().map(String::into_bytes).collect();
    alice_sends_malformed(&requests, 400).await;
}

#[tokio::test]
async fn pipelined_requests_where_the_second_asks_for_another_identity() {
    let scene = Scene::start().await;
    let first = request(
        &format!("GET {TOKEN} HTTP/1.1"),
        &["Host: nmi", "Metadata: true"],
        "",
    );
    let second = get(&token_for_beta(), &[]);
    let answers = scene.alice_sends(&[first, second].concat()).await;
    assert_eq!(answers.len(), 2);
    expect_token(&answers[0].answer, ALPHA_CLIENT);
    scene.raw_refused(&answers[1], NOT_FOUND).await;
    scene.finish().await;
}

#[tokio::test]
async fn a_second_request_smuggled_in_a_body() {
    // The body's bytes are a request for beta; they are a body, never a request. A last, plain
    // request closes the connection.
    let scene = Scene::start().await;
    let smuggled = String::from_utf8(get(&token_for_beta(), &[])).unwrap();
    let length = format!("Content-Length: {}", smuggled.len());
    let headers = ["Host: nmi", "Metadata: true", &length];
    let outer = request(&format!("GET {TOKEN} HTTP/1.1"), &headers, &smuggled);
    let answers = scene.alice_sends(&[outer, get(TOKEN, &[])].concat()).await;
    assert_eq!(answers.len(), 2, "a smuggled request was answered");
    for answer in &answers {
        expect_token(&answer.answer, ALPHA_CLIENT);
    }
    scene.finish().await;
}

#[tokio::test]
async fn transfer_encoding_and_content_length_together() {
    let smuggled = String::from_utf8(get(&token_for_beta(), &[])).unwrap();
    let headers = [
        "Host: nmi",
        "Metadata: true",
        "Content-Length: 5",
        "Transfer-Encoding: chunked",
    ];
    let bytes = request(
        &format!("GET {TOKEN} HTTP/1.1"),
        &headers,
        &format!("0\r\n\r\n{smuggled}"),
    );
    // The chunked body wins; the server answers and closes the connection, so what follows
    // the body is never read as a request.
    let scene = Scene::start().await;
    let answer = only(scene.alice_sends(&bytes).await);
    expect_token(&answer.answer, ALPHA_CLIENT);
    scene.finish().await;
}

#[tokio::test]
async fn slow_partial_requests_block_no_one_and_are_judged_by_their_socket() {
    let scene = Scene::start().await;
    let partial = format!("GET {} HTTP/1.1\r\nHost: nmi\r\nMeta", token_for_beta());
    let mut held = Vec::new();
    for _ in 0..32 {
        let mut stream = connect(scene.alice.ip, scene.nmi.metadata).await;
        stream.write_all(partial.as_bytes()).await.unwrap();
        held.push(stream);
    }
    // Meanwhile every other caller is answered.
    expect_token(&scene.bob.token(VAULT, "").await, BETA_CLIENT);
    expect_token(&scene.alice_asks("").await, ALPHA_CLIENT);
    // Completed at last, a slow request is alice's, asking for beta: refused.
    let mut stream = held.pop().unwrap();
    let rest = b"data: true\r\nConnection: close\r\n\r\n";
    stream.write_all(rest).await.unwrap();
    let answer = only(read_answers(&mut stream).await);
    scene.raw_refused(&answer, NOT_FOUND).await;
    drop(held);
    scene.finish().await;
}

// ---------------------------------------------------------------------------------------------
// The log of the whole battery.

/// Runs last (libtest starts tests in name order): serves every kind of token (IMDS, service
/// principal with secret and certificate, host listener) and refusals, waits for the rest of
/// the battery to end, then scans everything logged in this process.
#[tokio::test]
async fn z_the_battery_logged_no_token_and_no_secret() {
    let log = podid_testkit::capture_log(LOG_FILTER);
    let mut scene = Scene::start().await;
    for kind in [1, 2] {
        let name = format!("logged-sp-{kind}");
        let pod = scene
            .nmi
            .pod(&name, &[(POD_LABEL_KEY, name.as_str())])
            .await;
        let identity = service_principal(&scene.nmi, &name, kind).await;
        let assigned = Some(AssignedIdentityState::Assigned);
        scene.nmi.assign(&pod, &identity, assigned).await;
        expect_token(&pod.token(VAULT, "").await, SP_CLIENT);
    }
    let podns = format!("podns: {}", scene.ns());
    let headers = [
        "Host: nmi",
        podns.as_str(),
        "podname: bob",
        "Connection: close",
    ];
    let host_request = request(
        &format!("GET /host/token?resource={VAULT_QUERY} HTTP/1.1"),
        &headers,
        "",
    );
    let host = only(exchange(Ipv4Addr::LOCALHOST, scene.nmi.host, &host_request).await);
    assert_eq!(host.answer.status, 200, "{}", host.answer.text);
    remember_tokens(&host.answer.json());
    scene.rebaseline().await;
    scene
        .refused(
            &scene.alice_asks(&format!("&client_id={BETA_CLIENT}")).await,
            NOT_FOUND,
        )
        .await;
    scene.finish().await;

    // The rest of the battery: every other test started before this one.
    wait_for(
        "the rest of the battery ends",
        Duration::from_secs(900),
        || async { (RUNNING.load(Ordering::SeqCst) == 0).then_some(()) },
    )
    .await;
    let text = log.text();
    assert!(text.contains("token served"), "NMI's log was not captured");
    let tokens = SEEN_TOKENS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    assert!(tokens.len() >= 5, "{} tokens seen", tokens.len());
    let mut secrets: Vec<(&str, String)> = Vec::new();
    for token in &tokens {
        secrets.push(("a token", token.clone()));
        // Its signature alone (the part that makes it usable) must not appear either.
        let signature = token.rsplit('.').next().unwrap_or_default();
        if signature.len() >= 16 {
            secrets.push(("a token's signature", signature.to_owned()));
        }
    }
    // No JWT at all: every token the emulator issues is one, and so is a client assertion.
    secrets.push(("something JWT-shaped", "eyJ".to_owned()));
    secrets.push(("the client secret", SP_SECRET.to_owned()));
    secrets.push(("the certificate's password", P12_PASSWORD.to_owned()));
    // The Secret's data as the API server sends it (base64).
    let encoded = serde_json::to_value(ByteString(SP_SECRET.as_bytes().to_vec())).unwrap();
    secrets.push(("the Secret's data", encoded.as_str().unwrap().to_owned()));
    // Whole words only: the password `podid-test` is also the start of `podid-testkit`.
    let logged = |secret: &str| {
        text.match_indices(secret).any(|(at, _)| {
            let next = text[at + secret.len()..].chars().next();
            !next.is_some_and(|c| c.is_ascii_alphanumeric())
        })
    };
    let found: Vec<String> = secrets
        .iter()
        .filter(|(_, secret)| logged(secret))
        .map(|(what, secret)| {
            let lines: Vec<String> = text
                .lines()
                .filter(|line| line.contains(secret.as_str()))
                .take(3)
                .map(|line| line.replace(secret.as_str(), "<REDACTED>"))
                .collect();
            format!("{what}, in:\n  {}", lines.join("\n  "))
        })
        .collect();
    assert!(found.is_empty(), "logged:\n{}", found.join("\n"));
}
