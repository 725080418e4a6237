//! Azure clouds: the built-in ones by name, and custom clouds from a go-autorest environment
//! file (`AZURE_ENVIRONMENT_FILEPATH`), which is also how podid is pointed at an emulator.

use std::path::PathBuf;

use serde_json::{Map, Value};
use url::Url;

/// The environment variable naming a custom cloud's environment file.
pub const AZURE_ENVIRONMENT_FILEPATH: &str = "AZURE_ENVIRONMENT_FILEPATH";

/// The cloud name that selects the environment file.
pub const CUSTOM_CLOUD_NAME: &str = "AzureStackCloud";

/// The endpoints of one cloud.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudEnvironment {
    pub name: String,
    /// The ARM base URL; also the audience of ARM tokens, as upstream requested them.
    pub resource_manager_endpoint: Url,
    /// The Entra ID authority host (always ends in `/`).
    pub active_directory_endpoint: Url,
    /// `tokenAudience` of a custom cloud file, when it has one (informational: ARM tokens are
    /// requested for `resource_manager_endpoint`).
    pub token_audience: Option<String>,
    /// `serviceManagementEndpoint` of a custom cloud file, when it has one.
    pub service_management_endpoint: Option<String>,
}

/// Why a cloud could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum CloudError {
    #[error("the cloud name is empty")]
    EmptyName,
    #[error(
        "unknown cloud {0:?}: use AzurePublicCloud, AzureUSGovernmentCloud, AzureChinaCloud, AzureGermanCloud or AzureStackCloud"
    )]
    UnknownName(String),
    #[error("cloud AzureStackCloud needs {AZURE_ENVIRONMENT_FILEPATH} naming an environment file")]
    NoEnvironmentFile,
    #[error("reading the environment file {path}: {source}")]
    ReadFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the environment file is not a JSON object: {0}")]
    NotJson(String),
    #[error("the environment file has no {0}")]
    Missing(&'static str),
    #[error("{key} in the environment file is not an http(s) URL: {value:?}")]
    InvalidUrl { key: &'static str, value: String },
}

/// `(names, resourceManagerEndpoint, activeDirectoryEndpoint)` of the built-in clouds.
const BUILT_IN: &[(&[&str], &str, &str)] = &[
    (
        &["AzurePublicCloud", "AzureCloud"],
        "https://management.azure.com/",
        "https://login.microsoftonline.com/",
    ),
    (
        &["AzureUSGovernmentCloud", "AzureUSGovernment"],
        "https://management.usgovcloudapi.net/",
        "https://login.microsoftonline.us/",
    ),
    (
        &["AzureChinaCloud"],
        "https://management.chinacloudapi.cn/",
        "https://login.chinacloudapi.cn/",
    ),
    (
        &["AzureGermanCloud"],
        "https://management.microsoftazure.de/",
        "https://login.microsoftonline.de/",
    ),
];

impl CloudEnvironment {
    /// A built-in cloud by name, ignoring case (`AzureCloud` is `AzurePublicCloud`).
    pub fn built_in(name: &str) -> Option<Self> {
        let (names, arm, aad) = BUILT_IN
            .iter()
            .find(|(names, _, _)| names.iter().any(|n| n.eq_ignore_ascii_case(name)))?;
        Some(Self {
            name: names[0].to_string(),
            resource_manager_endpoint: Url::parse(arm).ok()?,
            active_directory_endpoint: Url::parse(aad).ok()?,
            token_audience: None,
            service_management_endpoint: None,
        })
    }

    /// Resolves a configured cloud name: a built-in cloud, or for `AzureStackCloud` the
    /// environment file's contents. An empty or unknown name is an error, as upstream.
    pub fn resolve(name: &str, environment_file: Option<&[u8]>) -> Result<Self, CloudError> {
        if name.trim().is_empty() {
            return Err(CloudError::EmptyName);
        }
        if name.eq_ignore_ascii_case(CUSTOM_CLOUD_NAME) {
            return Self::from_environment_json(
                environment_file.ok_or(CloudError::NoEnvironmentFile)?,
            );
        }
        Self::built_in(name).ok_or_else(|| CloudError::UnknownName(name.to_string()))
    }

    /// [`resolve`](Self::resolve), reading the file named by [`AZURE_ENVIRONMENT_FILEPATH`]
    /// (looked up through `env`) when the cloud is `AzureStackCloud`.
    pub fn load(name: &str, env: impl Fn(&str) -> Option<String>) -> Result<Self, CloudError> {
        let contents = match env(AZURE_ENVIRONMENT_FILEPATH).filter(|p| !p.is_empty()) {
            Some(path) if name.eq_ignore_ascii_case(CUSTOM_CLOUD_NAME) => {
                let path = PathBuf::from(path);
                Some(std::fs::read(&path).map_err(|source| CloudError::ReadFile { path, source })?)
            }
            _ => None,
        };
        Self::resolve(name, contents.as_deref())
    }

    /// Parses a go-autorest environment file. Keys match in any letter case, as Go's JSON
    /// decoding does; `resourceManagerEndpoint` and `activeDirectoryEndpoint` are required,
    /// other keys are read when useful and otherwise ignored.
    pub fn from_environment_json(bytes: &[u8]) -> Result<Self, CloudError> {
        let object: Map<String, Value> =
            serde_json::from_slice(bytes).map_err(|e| CloudError::NotJson(e.to_string()))?;
        let text = |key: &'static str| -> Option<String> {
            object
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .and_then(|(_, v)| v.as_str())
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        let endpoint = |key: &'static str| -> Result<Url, CloudError> {
            let value = text(key).ok_or(CloudError::Missing(key))?;
            match Url::parse(&value) {
                Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => Ok(url),
                _ => Err(CloudError::InvalidUrl { key, value }),
            }
        };
        let mut active_directory_endpoint = endpoint("activeDirectoryEndpoint")?;
        if !active_directory_endpoint.path().ends_with('/') {
            let path = format!("{}/", active_directory_endpoint.path());
            active_directory_endpoint.set_path(&path);
        }
        Ok(Self {
            name: text("name").unwrap_or_else(|| CUSTOM_CLOUD_NAME.to_string()),
            resource_manager_endpoint: endpoint("resourceManagerEndpoint")?,
            active_directory_endpoint,
            token_audience: text("tokenAudience"),
            service_management_endpoint: text("serviceManagementEndpoint"),
        })
    }

    /// The audience of ARM tokens: the ARM endpoint itself, as upstream's MIC asked for it.
    pub fn arm_audience(&self) -> &str {
        self.resource_manager_endpoint.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ARM and Entra ID endpoints of `env`.
    fn endpoints(env: &CloudEnvironment) -> (&str, &str) {
        (
            env.resource_manager_endpoint.as_str(),
            env.active_directory_endpoint.as_str(),
        )
    }

    #[test]
    fn built_in_clouds_by_any_name_and_case() {
        for (name, arm, aad) in [
            (
                "AzurePublicCloud",
                "https://management.azure.com/",
                "https://login.microsoftonline.com/",
            ),
            (
                "azurecloud",
                "https://management.azure.com/",
                "https://login.microsoftonline.com/",
            ),
            (
                "AzureUSGovernment",
                "https://management.usgovcloudapi.net/",
                "https://login.microsoftonline.us/",
            ),
            (
                "AZUREUSGOVERNMENTCLOUD",
                "https://management.usgovcloudapi.net/",
                "https://login.microsoftonline.us/",
            ),
            (
                "AzureChinaCloud",
                "https://management.chinacloudapi.cn/",
                "https://login.chinacloudapi.cn/",
            ),
            (
                "AzureGermanCloud",
                "https://management.microsoftazure.de/",
                "https://login.microsoftonline.de/",
            ),
        ] {
            let env = CloudEnvironment::resolve(name, None).unwrap();
            assert_eq!(endpoints(&env), (arm, aad), "{name}");
            assert_eq!(env.arm_audience(), arm);
        }
        assert_eq!(
            CloudEnvironment::resolve("azurecloud", None).unwrap().name,
            "AzurePublicCloud"
        );
    }

    #[test]
    fn empty_and_unknown_names_are_errors() {
        assert!(matches!(
            CloudEnvironment::resolve("", None),
            Err(CloudError::EmptyName)
        ));
        assert!(matches!(
            CloudEnvironment::resolve("  ", None),
            Err(CloudError::EmptyName)
        ));
        assert!(matches!(
            CloudEnvironment::resolve("AzureMoonCloud", None),
            Err(CloudError::UnknownName(n)) if n == "AzureMoonCloud"
        ));
        assert!(matches!(
            CloudEnvironment::resolve("azurestackcloud", None),
            Err(CloudError::NoEnvironmentFile)
        ));
    }

    const EMULATOR: &[u8] = br#"{"name":"AzureStackCloud","resourceManagerEndpoint":"https://127.0.0.1:8443/",
        "activeDirectoryEndpoint":"https://127.0.0.1:8444","tokenAudience":"https://127.0.0.1:8443/",
        "managementPortalURL":"","serviceManagementEndpoint":"","resourceIdentifiers":{},"graphEndpoint":"x"}"#;

    #[test]
    fn a_custom_cloud_file_gives_its_endpoints() {
        let env = CloudEnvironment::resolve("AzureStackCloud", Some(EMULATOR)).unwrap();
        assert_eq!(env.name, "AzureStackCloud");
        assert_eq!(
            endpoints(&env),
            ("https://127.0.0.1:8443/", "https://127.0.0.1:8444/")
        );
        assert_eq!(
            env.token_audience.as_deref(),
            Some("https://127.0.0.1:8443/")
        );
        assert_eq!(env.service_management_endpoint, None);
    }

    #[test]
    fn custom_cloud_keys_match_in_any_case() {
        let env = CloudEnvironment::from_environment_json(
            br#"{"ResourceManagerEndpoint":"http://127.0.0.1:1/arm/","ACTIVEDIRECTORYENDPOINT":"http://127.0.0.1:2/aad/"}"#,
        )
        .unwrap();
        assert_eq!(
            endpoints(&env),
            ("http://127.0.0.1:1/arm/", "http://127.0.0.1:2/aad/")
        );
        assert_eq!(env.name, "AzureStackCloud");
    }

    #[test]
    fn custom_cloud_files_missing_or_bad_endpoints_are_named() {
        let err = |json: &str| {
            CloudEnvironment::from_environment_json(json.as_bytes())
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err(r#"{"activeDirectoryEndpoint":"https://a/"}"#),
            "the environment file has no resourceManagerEndpoint"
        );
        assert_eq!(
            err(r#"{"resourceManagerEndpoint":"https://a/","activeDirectoryEndpoint":""}"#),
            "the environment file has no activeDirectoryEndpoint"
        );
        assert_eq!(
            err(
                r#"{"resourceManagerEndpoint":"127.0.0.1:8443","activeDirectoryEndpoint":"https://a/"}"#
            ),
            "resourceManagerEndpoint in the environment file is not an http(s) URL: \"127.0.0.1:8443\""
        );
        assert!(err("[]").starts_with("the environment file is not a JSON object"));
        assert!(err("{").starts_with("the environment file is not a JSON object"));
    }

    #[test]
    fn load_reads_the_file_only_for_the_custom_cloud() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("akscustom.json");
        std::fs::write(&path, EMULATOR).unwrap();
        let path_text = path.to_string_lossy().to_string();
        let env = |key: &str| (key == AZURE_ENVIRONMENT_FILEPATH).then(|| path_text.clone());

        let custom = CloudEnvironment::load("AzureStackCloud", env).unwrap();
        assert_eq!(
            custom.resource_manager_endpoint.as_str(),
            "https://127.0.0.1:8443/"
        );
        let public = CloudEnvironment::load("AzurePublicCloud", env).unwrap();
        assert_eq!(
            public.resource_manager_endpoint.as_str(),
            "https://management.azure.com/"
        );

        let missing = |key: &str| {
            (key == AZURE_ENVIRONMENT_FILEPATH)
                .then(|| dir.path().join("nope.json").to_string_lossy().to_string())
        };
        assert!(matches!(
            CloudEnvironment::load("AzureStackCloud", missing),
            Err(CloudError::ReadFile { .. })
        ));
        assert!(matches!(
            CloudEnvironment::load("AzureStackCloud", |_| None),
            Err(CloudError::NoEnvironmentFile)
        ));
    }
}
