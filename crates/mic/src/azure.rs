//! The Azure side's configuration: the cloud config (azure.json, or the environment without
//! `--cloudconfig`), the cloud (custom clouds through `AZURE_ENVIRONMENT_FILEPATH`), the
//! credential, and the ARM client built from them; re-read when the file changes.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use podid_azure::arm::{ArmClient, PollOptions};
use podid_azure::cloud::{CloudEnvironment, CloudError};
use podid_azure::config::{CloudConfig, ConfigError, CredentialSetupError};
use podid_azure::http::{HttpError, HttpOptions};
use tokio::sync::watch;
use url::Url;

use crate::controller::Azure;

/// Reads an environment variable (the process environment in production).
pub type Environment = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// The process environment.
pub fn process_environment() -> Environment {
    Arc::new(|name| std::env::var(name).ok())
}

/// Where the Azure configuration comes from.
#[derive(Clone)]
pub struct AzureSource {
    /// `--cloudconfig`; `None`: the environment variables of docs/mic.md.
    pub cloud_config: Option<PathBuf>,
    pub http: HttpOptions,
    /// The IMDS MIC asks for its token with `useManagedIdentityExtension`.
    pub imds_endpoint: Url,
    pub poll: PollOptions,
    /// The cloud config without `--cloudconfig`, and `AZURE_ENVIRONMENT_FILEPATH`.
    pub environment: Environment,
}

impl fmt::Debug for AzureSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzureSource")
            .field("cloud_config", &self.cloud_config)
            .field("imds_endpoint", &self.imds_endpoint.as_str())
            .finish_non_exhaustive()
    }
}

/// Why the Azure configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum AzureSetupError {
    #[error("reading the cloud config {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the cloud config: {0}")]
    Config(#[from] ConfigError),
    #[error("the cloud: {0}")]
    Cloud(#[from] CloudError),
    #[error("the credential: {0}")]
    Credential(#[from] CredentialSetupError),
    #[error("the HTTP client: {0}")]
    Http(#[from] HttpError),
}

impl AzureSource {
    /// Reads the configuration once and builds the clients.
    pub fn load(&self) -> Result<Azure, AzureSetupError> {
        let config = match &self.cloud_config {
            Some(path) => CloudConfig::from_azure_json(&self.read(path)?)?,
            None => CloudConfig::from_env(|name| (self.environment)(name)),
        };
        config.validate()?;
        let cloud = CloudEnvironment::load(&config.cloud, |name| (self.environment)(name))?;
        let credential =
            config
                .auth()?
                .credential(&cloud, &self.http, self.imds_endpoint.clone())?;
        let arm = ArmClient::for_cloud(self.http.https_client()?, &cloud, credential)
            .with_poll_options(self.poll);
        let cluster_identity =
            Some(config.user_assigned_identity_id.trim().to_owned()).filter(|id| !id.is_empty());
        Ok(Azure {
            arm,
            cluster_identity,
        })
    }

    fn read(&self, path: &PathBuf) -> Result<Vec<u8>, AzureSetupError> {
        std::fs::read(path).map_err(|source| AzureSetupError::Read {
            path: path.clone(),
            source,
        })
    }

    /// Re-reads the cloud config file every `interval` and, when its bytes changed, rebuilds
    /// the clients into `sender`. A file that no longer loads keeps the previous clients.
    pub async fn watch(self, sender: watch::Sender<Option<Azure>>, interval: Duration) {
        let Some(path) = self.cloud_config.clone() else {
            return;
        };
        let mut last = std::fs::read(&path).ok();
        loop {
            tokio::time::sleep(interval).await;
            let now = std::fs::read(&path).ok();
            if now.is_none() || now == last {
                continue;
            }
            last = now;
            match self.load() {
                Ok(azure) => {
                    tracing::info!(path = %path.display(), "cloud config changed; ARM clients rebuilt");
                    sender.send_replace(Some(azure));
                }
                Err(error) => {
                    tracing::error!(path = %path.display(), %error, "the changed cloud config is unusable; keeping the previous one");
                }
            }
        }
    }
}
