//! Building this crate's clients for an emulator started with `podid_emulator::testing`:
//! HTTP options that trust its CA and never use a proxy, IMDS clients for its machines,
//! service principals at its Entra ID, ARM clients at its ARM.
//!
//! Each test binary uses a subset.
#![allow(dead_code)]

use std::sync::Arc;

use podid_azure::arm::{ArmClient, MachineId, MachineKind, PollOptions};
use podid_azure::credential::{
    AuthError, ClientAuth, ClientCertificate, Credential, EntraEndpoint, ImdsClient, ServiceError,
    ServicePrincipalCredential, Token,
};
use podid_azure::http::HttpOptions;
use podid_emulator::testing::{ARM_AUDIENCE, Emulator, NODE_RG, SCALE_SET, SUBSCRIPTION, VM};
use secrecy::SecretString;
use url::Url;

/// The seed world's service principal (deploy/emulator/seed-world.yaml): its secret, and the
/// certificate of tests/fixtures/seed-sp*.p12.
pub const SEED_SP: &str = "1c2d3e4f-5a6b-4c7d-8e9f-a0b1c2d3e4f5";
pub const SEED_SP_OBJECT: &str = "3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f";
pub const SEED_SP_SECRET: &str = "seed-sp-secret.emulator-only~0123456789";
pub const P12: &[u8] = include_bytes!("../fixtures/seed-sp.p12");
pub const P12_LEGACY: &[u8] = include_bytes!("../fixtures/seed-sp-legacy.p12");
pub const P12_PASSWORD: &str = "podid-test";

/// Trusts the emulator's CA (as a file, the way a deployment names it) and ignores any proxy
/// in the environment, so nothing leaves loopback.
pub fn http_options(emu: &Emulator) -> HttpOptions {
    HttpOptions {
        use_environment_proxy: false,
        ..HttpOptions::default()
    }
    .trusting_ca_file(emu.ca_file())
    .expect("the emulator's CA file")
}

pub fn https(emu: &Emulator) -> reqwest::Client {
    http_options(emu).https_client().expect("an HTTPS client")
}

pub fn url(text: &str) -> Url {
    Url::parse(text).expect("a URL")
}

/// A loopback URL with `scheme` at a port nothing listens on (bound, then released).
pub fn unanswered_url(scheme: &str) -> Url {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    url(&format!("{scheme}://127.0.0.1:{port}/"))
}

/// The error a service answered with; anything else fails the test.
pub fn service_error(result: Result<Token, AuthError>) -> ServiceError {
    match result {
        Err(AuthError::Service(e)) => *e,
        other => panic!("expected a service's error answer, got {other:?}"),
    }
}

/// The IMDS of one of the emulator's machines.
pub fn imds(emu: &Emulator, machine: &str) -> ImdsClient {
    ImdsClient::new(&http_options(emu), url(emu.imds_base(machine))).expect("an IMDS client")
}

/// A service principal at the emulator's Entra ID.
pub fn service_principal(
    emu: &Emulator,
    tenant: &str,
    client_id: &str,
    auth: ClientAuth,
    endpoint: EntraEndpoint,
) -> ServicePrincipalCredential {
    ServicePrincipalCredential::new(
        https(emu),
        url(emu.entra_base()),
        tenant,
        client_id,
        auth,
        endpoint,
    )
}

pub fn secret(text: &str) -> ClientAuth {
    ClientAuth::Secret(SecretString::from(text))
}

pub fn certificate(p12: &[u8]) -> ClientAuth {
    ClientAuth::Certificate(Arc::new(
        ClientCertificate::from_pkcs12(p12, P12_PASSWORD).expect("the fixture reads"),
    ))
}

/// Polls as often as the emulator says (its knobs set `Retry-After: 0` in these tests).
pub fn poll_options() -> PollOptions {
    PollOptions {
        default_delay: std::time::Duration::ZERO,
        ..PollOptions::default()
    }
}

/// An ARM client at the emulator's ARM, asking for `https://management.azure.com/` tokens.
pub fn arm(emu: &Emulator, credential: Credential) -> ArmClient {
    ArmClient::new(https(emu), url(emu.arm_base()), credential, ARM_AUDIENCE)
        .with_poll_options(poll_options())
}

/// The scale set and the VM of `small_world`.
pub fn scale_set() -> MachineId {
    MachineId::new(
        MachineKind::VirtualMachineScaleSet,
        SUBSCRIPTION,
        NODE_RG,
        SCALE_SET,
    )
}

pub fn vm() -> MachineId {
    MachineId::new(MachineKind::VirtualMachine, SUBSCRIPTION, NODE_RG, VM)
}
