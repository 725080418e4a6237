//! Binding the listeners: ARM and Entra ID over HTTPS, the admin API over HTTP, and one HTTP
//! IMDS listener per machine. Every address is checked against the safety rule first.

pub mod netns;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use serde::Serialize;

use crate::clock::ClockMode;
use crate::state::Shared;
use crate::tls::{self, TlsError};
use crate::tokens::{TokenError, TokenIssuer};
use crate::world::{MachineRef, WorldError, WorldFile};
use netns::MetadataRefusal;

/// The instance metadata address: usable only where [`netns::metadata_address_allowed`] allows.
pub const METADATA_ADDRESS: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    World(#[from] WorldError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Tokens(#[from] TokenError),
    #[error("{what}: {address:?} is not a socket address (expected e.g. 127.0.0.1:0)")]
    BadAddress { what: String, address: String },
    #[error(
        "{what}: refusing to listen on {address}: the emulator listens only on loopback \
         (127.0.0.0/8, ::1), or, inside a lab's network namespace, on 169.254.169.254 or a \
         private IPv4 address (10/8, 172.16/12, 192.168/16)"
    )]
    UnsafeAddress { what: String, address: SocketAddr },
    #[error(
        "{what}: refusing to listen on {address}: the metadata address and lab addresses are \
         allowed only in a network namespace other than PID 1's or in one with no route out; \
         here {reason}"
    )]
    LabAddressRefused {
        what: String,
        address: SocketAddr,
        reason: MetadataRefusal,
    },
    #[error("{what}: cannot listen on {address}: {source}")]
    Bind {
        what: String,
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot write the CA certificate to {path}: {source}")]
    WriteCa {
        path: String,
        source: std::io::Error,
    },
}

/// Where every surface listens.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoints {
    /// ARM base URL (`https://127.0.0.1:<port>`), no trailing slash.
    pub arm: String,
    /// Entra ID authority host (`https://127.0.0.1:<port>`); tenants are the first path segment.
    pub entra: String,
    pub admin: String,
    /// IMDS base URL per machine name (`http://127.0.0.1:<port>`).
    pub imds: BTreeMap<String, String>,
    /// PEM of the CA that signed the HTTPS certificates.
    #[serde(skip)]
    pub ca_pem: String,
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    /// Where to write the CA certificate (PEM) that clients must trust.
    pub ca_file: Option<PathBuf>,
    /// How the emulator's clock moves (wall time by default).
    pub clock: ClockMode,
}

pub struct RunningEmulator {
    pub endpoints: Endpoints,
    pub shared: Arc<Shared>,
    handles: Vec<axum_server::Handle<SocketAddr>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl RunningEmulator {
    /// Stops every listener, letting requests in flight finish for up to a second.
    pub async fn shutdown(self) {
        for handle in &self.handles {
            handle.graceful_shutdown(Some(std::time::Duration::from_secs(1)));
        }
        for task in self.tasks {
            // A listener task that panicked has nothing left to stop.
            let _ = task.await;
        }
    }
}

/// The safety rule for listen addresses: loopback always; the metadata address, and private
/// IPv4 addresses (a node lab's stand-ins for Azure's hosts), only when
/// [`netns::metadata_address_allowed`] said so (its verdict is `metadata`): a listener there
/// can neither hijack the machine's metadata service nor be reached from outside the lab.
/// Nothing else (no wildcard, no public address).
pub fn check_listen_address(
    what: &str,
    address: SocketAddr,
    metadata: &Result<(), MetadataRefusal>,
) -> Result<(), StartError> {
    match address.ip() {
        IpAddr::V4(ip) if ip.is_loopback() => Ok(()),
        IpAddr::V6(ip) if ip.is_loopback() => Ok(()),
        IpAddr::V4(ip) if ip == METADATA_ADDRESS || ip.is_private() => {
            metadata
                .clone()
                .map_err(|reason| StartError::LabAddressRefused {
                    what: what.to_string(),
                    address,
                    reason,
                })
        }
        _ => Err(StartError::UnsafeAddress {
            what: what.to_string(),
            address,
        }),
    }
}

fn parse_address(what: &str, address: &str) -> Result<SocketAddr, StartError> {
    address.parse().map_err(|_| StartError::BadAddress {
        what: what.to_string(),
        address: address.to_string(),
    })
}

fn bind(
    what: &str,
    address: &str,
    metadata: &Result<(), MetadataRefusal>,
) -> Result<std::net::TcpListener, StartError> {
    let address = parse_address(what, address)?;
    check_listen_address(what, address, metadata)?;
    let listener = std::net::TcpListener::bind(address).map_err(|source| StartError::Bind {
        what: what.to_string(),
        address,
        source,
    })?;
    listener
        .set_nonblocking(true)
        .map_err(|source| StartError::Bind {
            what: what.to_string(),
            address,
            source,
        })?;
    Ok(listener)
}

fn local_address(listener: &std::net::TcpListener, what: &str) -> Result<SocketAddr, StartError> {
    listener.local_addr().map_err(|source| StartError::Bind {
        what: what.to_string(),
        address: SocketAddr::from(([127, 0, 0, 1], 0)),
        source,
    })
}

/// Starts every surface of the emulator described by `file`.
pub async fn start(file: WorldFile, options: StartOptions) -> Result<RunningEmulator, StartError> {
    // Decided once, before anything listens; only a metadata listen address consults it.
    let metadata = netns::metadata_address_allowed();
    let mut tenants = vec![file.tenant_id.as_str()];
    tenants.extend(file.extra_tenant_ids.iter().map(String::as_str));
    let tokens = TokenIssuer::new(tenants)?;
    let tls = tls::generate(&file.listen.certificate_names)?;
    let shared = Shared::new(file, tokens, options.clock)?;

    // Bind everything before serving anything, so a bad address fails the whole start.
    let listen = shared.initial.listen.clone();
    let arm = bind("arm", &listen.arm, &metadata)?;
    let entra = bind("entra", &listen.entra, &metadata)?;
    let admin = bind("admin", &listen.admin, &metadata)?;
    let machines: Vec<(MachineRef, String, String)> = shared
        .world()
        .machines()
        .into_iter()
        .map(|(r, m)| (r, m.name.clone(), m.imds_listen.clone()))
        .collect();
    let mut imds = Vec::new();
    for (machine, name, address) in machines {
        let listener = bind(&format!("imds of {name}"), &address, &metadata)?;
        imds.push((machine, name, listener));
    }

    let url = |scheme: &str, l: &std::net::TcpListener, what: &str| {
        local_address(l, what).map(|a| format!("{scheme}://{a}"))
    };
    let mut endpoints = Endpoints {
        arm: url("https", &arm, "arm")?,
        entra: url("https", &entra, "entra")?,
        admin: url("http", &admin, "admin")?,
        imds: BTreeMap::new(),
        ca_pem: tls.ca_pem.clone(),
        ca_file: options.ca_file.clone(),
    };
    for (_, name, listener) in &imds {
        endpoints
            .imds
            .insert(name.clone(), url("http", listener, name)?);
    }
    if let Some(path) = &options.ca_file {
        std::fs::write(path, &tls.ca_pem).map_err(|source| StartError::WriteCa {
            path: path.display().to_string(),
            source,
        })?;
    }
    let _ = shared.endpoints.set(endpoints.clone());

    let rustls = axum_server::tls_rustls::RustlsConfig::from_config(tls.server_config.clone());
    let mut running = RunningEmulator {
        endpoints,
        shared: shared.clone(),
        handles: Vec::new(),
        tasks: Vec::new(),
    };
    running.serve(
        arm,
        Some(rustls.clone()),
        crate::arm::router(shared.clone()),
    )?;
    running.serve(entra, Some(rustls), crate::entra::router(shared.clone()))?;
    running.serve(admin, None, crate::admin::router(shared.clone()))?;
    for (machine, name, listener) in imds {
        running.serve(
            listener,
            None,
            crate::imds::router(shared.clone(), machine, &name),
        )?;
    }
    Ok(running)
}

impl RunningEmulator {
    /// Serves `router` on `listener`, over TLS when `tls` is given.
    fn serve(
        &mut self,
        listener: std::net::TcpListener,
        tls: Option<axum_server::tls_rustls::RustlsConfig>,
        router: Router,
    ) -> Result<(), StartError> {
        let address = local_address(&listener, "listener")?;
        let bind_error = |source| StartError::Bind {
            what: "listener".into(),
            address,
            source,
        };
        let handle = axum_server::Handle::new();
        let app = router.into_make_service_with_connect_info::<SocketAddr>();
        let task = match tls {
            Some(tls) => {
                let server = axum_server::from_tcp_rustls(listener, tls)
                    .map_err(bind_error)?
                    .handle(handle.clone());
                tokio::spawn(log_stop(address, server.serve(app)))
            }
            None => {
                let server = axum_server::from_tcp(listener)
                    .map_err(bind_error)?
                    .handle(handle.clone());
                tokio::spawn(log_stop(address, server.serve(app)))
            }
        };
        self.tasks.push(task);
        self.handles.push(handle);
        Ok(())
    }
}

async fn log_stop(address: SocketAddr, serving: impl Future<Output = std::io::Result<()>>) {
    if let Err(error) = serving.await {
        tracing::error!(%address, %error, "listener stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_is_allowed_and_metadata_or_lab_addresses_only_where_the_namespace_check_allows()
     {
        let allowed = Ok(());
        let refused = Err(MetadataRefusal::MachineNamespace);
        let ok = |a: &str, metadata| {
            check_listen_address("t", a.parse().expect("addr"), metadata).is_ok()
        };
        assert!(ok("127.0.0.1:0", &refused));
        assert!(ok("127.0.1.7:80", &refused));
        assert!(ok("[::1]:0", &refused));
        assert!(!ok("169.254.169.254:80", &refused));
        assert!(ok("169.254.169.254:80", &allowed));
        assert!(!ok("169.254.169.253:80", &allowed));
        assert!(!ok("0.0.0.0:80", &allowed));
        assert!(!ok("[::]:80", &allowed));
        assert!(!ok("8.8.8.8:443", &allowed));
        assert!(!ok("169.254.1.1:443", &allowed));
        // A node lab's stand-ins for Azure's hosts: only inside the lab's namespace.
        assert!(ok("10.77.1.1:443", &allowed));
        assert!(ok("192.168.7.1:443", &allowed));
        assert!(!ok("10.77.1.1:443", &refused));
        let err = check_listen_address(
            "imds of vm",
            "169.254.169.254:80".parse().expect("addr"),
            &refused,
        )
        .expect_err("refused");
        assert!(
            err.to_string()
                .contains("this is the machine's own network namespace"),
            "{err}"
        );
    }

    #[test]
    fn every_default_listen_address_is_loopback() {
        let defaults = crate::world::ListenSpec::default();
        let machine = crate::world::MachineSpec::default();
        for address in [
            &defaults.arm,
            &defaults.entra,
            &defaults.admin,
            &machine.imds,
        ] {
            let parsed: SocketAddr = address.parse().expect("a socket address");
            assert!(parsed.ip().is_loopback(), "{address} is not loopback");
            check_listen_address("default", parsed, &Err(MetadataRefusal::MachineNamespace))
                .expect("allowed outside a namespace");
        }
    }
}
