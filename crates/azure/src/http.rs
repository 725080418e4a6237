//! The HTTP clients: one for ARM and Entra ID (HTTPS, optional extra CA), one for IMDS
//! (plain HTTP, never through a proxy).

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The User-Agent podid sends unless told otherwise.
pub const DEFAULT_USER_AGENT: &str = concat!("podid/", env!("CARGO_PKG_VERSION"));

/// How the HTTP clients are built.
#[derive(Clone, Debug)]
pub struct HttpOptions {
    pub user_agent: String,
    pub connect_timeout: Duration,
    /// For a whole request, body included.
    pub timeout: Duration,
    /// PEM certificates trusted in addition to the system's roots (a private cloud's CA, the
    /// emulator's CA).
    pub extra_ca_pem: Option<Vec<u8>>,
    /// Whether ARM and Entra ID requests honour `HTTPS_PROXY`/`NO_PROXY`. IMDS never does.
    pub use_environment_proxy: bool,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            user_agent: DEFAULT_USER_AGENT.to_string(),
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(60),
            extra_ca_pem: None,
            use_environment_proxy: true,
        }
    }
}

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("reading the CA file {path}: {source}")]
    ReadCa {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the extra CA is not PEM certificates: {0}")]
    InvalidCa(#[source] reqwest::Error),
    #[error("the extra CA holds no certificate")]
    EmptyCa,
    #[error("building the HTTP client: {0}")]
    Build(#[source] reqwest::Error),
}

impl HttpOptions {
    /// These options, also trusting the PEM certificates in `path`.
    pub fn trusting_ca_file(mut self, path: &Path) -> Result<Self, HttpError> {
        let pem = std::fs::read(path).map_err(|source| HttpError::ReadCa {
            path: path.to_path_buf(),
            source,
        })?;
        self.extra_ca_pem = Some(pem);
        Ok(self)
    }

    /// The client for ARM and Entra ID.
    pub fn https_client(&self) -> Result<reqwest::Client, HttpError> {
        let mut builder = self.common();
        if let Some(pem) = &self.extra_ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(HttpError::InvalidCa)?;
            if certs.is_empty() {
                return Err(HttpError::EmptyCa);
            }
            builder = builder.tls_certs_merge(certs);
        }
        if !self.use_environment_proxy {
            builder = builder.no_proxy();
        }
        builder.build().map_err(HttpError::Build)
    }

    /// The client for IMDS: IMDS refuses proxied requests, and a token must not leave the
    /// machine through one, so proxies are off whatever the environment says. Redirects are not
    /// followed: IMDS never sends one.
    pub fn imds_client(&self) -> Result<reqwest::Client, HttpError> {
        self.common()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(HttpError::Build)
    }

    fn common(&self) -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            .user_agent(self.user_agent.clone())
            .connect_timeout(self.connect_timeout)
            .timeout(self.timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_name_podid_and_honour_the_environment_proxy() {
        let options = HttpOptions::default();
        assert!(options.user_agent.starts_with("podid/"));
        assert!(options.use_environment_proxy);
        assert!(options.extra_ca_pem.is_none());
        options.https_client().unwrap();
        options.imds_client().unwrap();
    }

    #[test]
    fn a_ca_that_is_not_pem_is_refused() {
        let options = HttpOptions {
            extra_ca_pem: Some(b"not a certificate".to_vec()),
            ..HttpOptions::default()
        };
        assert!(matches!(
            options.https_client(),
            Err(HttpError::EmptyCa | HttpError::InvalidCa(_))
        ));
    }

    #[test]
    fn a_missing_ca_file_names_the_path() {
        let err = HttpOptions::default()
            .trusting_ca_file(Path::new("/nonexistent/podid-ca.pem"))
            .unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/podid-ca.pem"),
            "{err}"
        );
    }
}
