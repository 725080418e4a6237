//! An Azure emulator faithful to the wire: ARM (compute identities, managed identities, role
//! assignments, Azure DNS zones), IMDS (one listener per machine) and Entra ID (v1/v2 token endpoints, OIDC,
//! JWKS), with RBAC, throttling and fault injection. Facts it honours are in
//! docs/azure-wire.md; its world file and admin API are in docs/emulator.md.

pub mod admin;
pub mod arm;
pub mod armid;
pub mod clock;
pub mod dns;
pub mod entra;
pub mod faults;
pub mod imds;
pub mod journal;
pub mod knobs;
pub mod rbac;
pub mod server;
pub mod state;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tls;
pub mod tokens;
pub mod world;

pub use server::{Endpoints, RunningEmulator, StartError, StartOptions, start};
pub use world::WorldFile;
