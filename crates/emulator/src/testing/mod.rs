//! A test harness around the emulator (cargo feature `testing`): start it in-process on
//! ephemeral loopback ports, from the seed world or from a world built in code, and talk to
//! every surface with clients that trust only its CA and never use a proxy.
//!
//! ```no_run
//! # async fn example() {
//! use podid_emulator::testing::{Emulator, small_world, MIC, vmss_path};
//! let emu = Emulator::start(&small_world()).await;       // manual clock: time stands still
//! let token = emu.arm_token(MIC);
//! let vmss = emu.arm(reqwest::Method::GET, &vmss_path(), Some(&token), None).await;
//! assert_eq!(vmss.status, 200);
//! emu.advance_clock(60).await;                            // time moves only when asked
//! emu.shutdown().await;
//! # }
//! ```
//!
//! Parts: ARM requests and tokens in [`arm`](Emulator::arm), IMDS in
//! [`imds_get`](Emulator::imds_get), Entra ID in [`v2_url`](Emulator::v2_url), the admin API
//! (faults, held requests, clock, knobs, counters, journal) in [`admin`](Emulator::admin); the
//! worlds the emulator's own tests use and their constants in [`worlds`]; JWT decoding in
//! [`jwt_claims`]. Helpers panic with a message when the emulator does not answer as they
//! expect, as test code should.

mod admin;
mod arm;
mod entra;
mod imds;
mod jwt;
pub mod worlds;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::Value;

pub use crate::clock::ClockMode;
pub use crate::faults::Surface;
pub use crate::faults::hold::HeldRequest;
pub use arm::ARM_AUDIENCE;
pub use imds::{ARM_RESOURCE, OK_QUERY, TextReply};
pub use jwt::{jwt_claims, jwt_header};
pub use worlds::*;

use crate::server::Endpoints;
use crate::state::Shared;
use crate::{RunningEmulator, StartOptions, WorldFile};

/// The seed story's Azure side (`deploy/emulator/seed-world.yaml`), built into the crate so a
/// test does not depend on its working directory.
pub const SEED_WORLD: &str = include_str!("../../../../deploy/emulator/seed-world.yaml");

/// An emulator running in this process, with clients for its surfaces.
pub struct Emulator {
    running: RunningEmulator,
    https: reqwest::Client,
    http: reqwest::Client,
    ca_file: PathBuf,
    /// Holds the CA file; removed when the emulator is dropped.
    _ca_dir: tempfile::TempDir,
}

impl Emulator {
    /// Starts the world in `yaml` (the world-file format of docs/emulator.md) with a manual
    /// clock.
    pub async fn start(yaml: &str) -> Self {
        Self::start_world(parse_world(yaml)).await
    }

    /// Starts the seed world ([`SEED_WORLD`]) with a manual clock.
    pub async fn start_seed() -> Self {
        Self::start(SEED_WORLD).await
    }

    /// Starts a world built in code with a manual clock.
    pub async fn start_world(world: WorldFile) -> Self {
        Self::start_with(world, ClockMode::Manual).await
    }

    /// Starts a world with the clock in `mode`. With [`ClockMode::Manual`] (what the other
    /// constructors use) nothing time-driven happens unless the test advances the clock:
    /// tokens do not expire, operations do not complete, delays do not pass, throttle buckets
    /// do not refill.
    pub async fn start_with(world: WorldFile, mode: ClockMode) -> Self {
        let ca_dir = tempfile::tempdir().expect("a temporary directory for the CA");
        let ca_file = ca_dir.path().join("emulator-ca.pem");
        let options = StartOptions {
            ca_file: Some(ca_file.clone()),
            clock: mode,
        };
        let running = crate::start(world, options)
            .await
            .expect("the emulator starts");
        let https = https_client(&running.endpoints.ca_pem);
        Self {
            running,
            https,
            http: http_client(),
            ca_file,
            _ca_dir: ca_dir,
        }
    }

    /// Stops every listener. Held requests are released first so that nothing waits.
    pub async fn shutdown(self) {
        self.shared().faults.holds().release_where(None);
        self.running.shutdown().await;
    }

    /// Where every surface listens.
    pub fn endpoints(&self) -> &Endpoints {
        &self.running.endpoints
    }

    /// `https://127.0.0.1:<port>`, ARM's base URL, without a trailing slash.
    pub fn arm_base(&self) -> &str {
        &self.running.endpoints.arm
    }

    /// `https://127.0.0.1:<port>`, the Entra ID authority host; the tenant is the first path
    /// segment of an authority.
    pub fn entra_base(&self) -> &str {
        &self.running.endpoints.entra
    }

    /// `http://127.0.0.1:<port>`, the admin API's base URL.
    pub fn admin_base(&self) -> &str {
        &self.running.endpoints.admin
    }

    /// `http://127.0.0.1:<port>`, the IMDS of one machine: a VM's name, or
    /// `<scale set>_<instance id>`.
    ///
    /// # Panics
    /// If the world has no such machine.
    pub fn imds_base(&self, machine: &str) -> &str {
        self.running.endpoints.imds.get(machine).unwrap_or_else(|| {
            let known: Vec<&String> = self.running.endpoints.imds.keys().collect();
            panic!("no machine {machine:?} in the world; machines: {known:?}")
        })
    }

    /// The names of every machine with an IMDS listener, sorted.
    pub fn machines(&self) -> impl Iterator<Item = &str> {
        self.running.endpoints.imds.keys().map(String::as_str)
    }

    /// PEM of the CA that signed the ARM and Entra ID certificates.
    pub fn ca_pem(&self) -> &str {
        &self.running.endpoints.ca_pem
    }

    /// A file holding [`Emulator::ca_pem`], for clients configured by path; it lives as long as
    /// the emulator.
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// An HTTPS client trusting only the emulator's CA (for ARM and Entra ID).
    pub fn https(&self) -> &reqwest::Client {
        &self.https
    }

    /// A plain-HTTP client (for IMDS and the admin API).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The emulator's state, for tests that look inside (mint a token, read the world).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.running.shared
    }

    /// Sends a request built on [`Emulator::http`] or [`Emulator::https`] and reads the answer.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        reply(request.send().await.expect("the emulator answers")).await
    }
}

/// A response read whole: status, headers and the body as JSON (`Null` when empty or not JSON).
#[derive(Debug)]
pub struct Reply {
    /// The HTTP status.
    pub status: StatusCode,
    /// Every response header.
    pub headers: HeaderMap,
    /// The body as JSON, `Null` when it is empty or not JSON.
    pub body: Value,
}

impl Reply {
    /// One header's value, if present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `error.code` of an ARM error body (`""` if absent).
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or_default()
    }

    /// Asserts the status and `error.code` of an ARM error answer, showing the body otherwise.
    ///
    /// # Panics
    /// When either differs.
    #[track_caller]
    pub fn assert_error(&self, status: StatusCode, code: &str) {
        assert_eq!((self.status, self.code()), (status, code), "{}", self.body);
    }

    /// `error.message` of an ARM error body (`""` if absent).
    pub fn message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or_default()
    }

    /// The body, which must be JSON.
    ///
    /// # Panics
    /// When the body is empty or not JSON.
    pub fn json(&self) -> Value {
        assert!(
            !self.body.is_null(),
            "the {} answer has no JSON body",
            self.status
        );
        self.body.clone()
    }

    /// `error_description` of an IMDS or Entra ID error body.
    pub fn description(&self) -> String {
        self.json()["error_description"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

/// Reads a whole response into a [`Reply`].
pub async fn reply(response: reqwest::Response) -> Reply {
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.expect("a readable body");
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        body,
    }
}

/// An HTTPS client that trusts exactly `ca_pem` and talks to loopback directly (no proxy).
pub fn https_client(ca_pem: &str) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("the emulator CA is PEM");
    reqwest::Client::builder()
        .tls_certs_only([ca])
        .no_proxy()
        .build()
        .expect("an HTTPS client")
}

/// A plain-HTTP client that never uses a proxy.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("an HTTP client")
}

/// Parses a world file's YAML (or JSON).
///
/// # Panics
/// When the world is invalid, with the loader's message.
pub fn parse_world(yaml: &str) -> WorldFile {
    WorldFile::parse(yaml).unwrap_or_else(|e| panic!("the test world does not load: {e}"))
}
