//! The controller's cloud configuration: upstream's `azure.json` (read as YAML, keys
//! case-sensitive, unknown keys ignored), or the environment variables of the no-azure.json
//! deployment. Parsing is pure; secrets never appear in `Debug` output or error messages.

use std::fmt;
use std::path::PathBuf;

use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

use crate::cloud::CloudEnvironment;
use crate::credential::{
    CertificateError, ClientAuth, ClientCertificate, Credential, EntraEndpoint, IdentitySelector,
    ImdsClient, ServicePrincipalCredential,
};
use crate::http::{HttpError, HttpOptions};

/// The fields of `azure.json` podid reads.
#[derive(Clone, Default, Deserialize)]
#[serde(default)]
pub struct CloudConfig {
    pub cloud: String,
    #[serde(rename = "tenantId")]
    pub tenant_id: String,
    #[serde(rename = "aadClientId")]
    pub aad_client_id: String,
    #[serde(rename = "aadClientSecret")]
    pub aad_client_secret: Option<SecretString>,
    /// A PKCS#12 file.
    #[serde(rename = "aadClientCertPath")]
    pub aad_client_cert_path: String,
    #[serde(rename = "aadClientCertPassword")]
    pub aad_client_cert_password: Option<SecretString>,
    #[serde(rename = "subscriptionId")]
    pub subscription_id: String,
    /// The resource group of every VM and scale set (the node resource group).
    #[serde(rename = "resourceGroup")]
    pub resource_group: String,
    #[serde(rename = "vmType")]
    pub vm_type: String,
    #[serde(rename = "useManagedIdentityExtension")]
    pub use_managed_identity_extension: bool,
    /// Despite the name, the *client ID* of the identity to use through IMDS; empty for the
    /// system-assigned one.
    #[serde(rename = "userAssignedIdentityID")]
    pub user_assigned_identity_id: String,
}

/// How the controller signs in to ARM, as the configuration says.
#[derive(Clone)]
pub enum ArmAuth {
    /// Through the node's IMDS; `client_id` `None` means the system-assigned identity.
    ManagedIdentity { client_id: Option<String> },
    ClientSecret {
        tenant_id: String,
        client_id: String,
        secret: SecretString,
    },
    ClientCertificate {
        tenant_id: String,
        client_id: String,
        path: PathBuf,
        password: SecretString,
    },
}

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The position only: serde's message may quote a value, and values may be secrets.
    #[error(
        "azure.json is not valid JSON or YAML, or a field has the wrong type (line {line}, column {column})"
    )]
    Parse { line: usize, column: usize },
    #[error("azure.json is not valid JSON or YAML, or a field has the wrong type")]
    ParseNoPosition,
    #[error("the cloud configuration lacks {}", .0.join(", "))]
    Missing(Vec<&'static str>),
    #[error(
        "the cloud configuration names no credential: set useManagedIdentityExtension, aadClientSecret, or aadClientCertPath and aadClientCertPassword"
    )]
    NoCredential,
}

impl CloudConfig {
    /// Parses `azure.json` (JSON, or YAML as upstream accepted).
    pub fn from_azure_json(bytes: &[u8]) -> Result<Self, ConfigError> {
        serde_yaml_ng::from_slice(bytes).map_err(|e| match e.location() {
            Some(at) => ConfigError::Parse {
                line: at.line(),
                column: at.column(),
            },
            None => ConfigError::ParseNoPosition,
        })
    }

    /// The no-azure.json configuration: `CLOUD`, `TENANT_ID`, `CLIENT_ID`, `CLIENT_SECRET`,
    /// `SUBSCRIPTION_ID`, `RESOURCE_GROUP`, `VM_TYPE`, `USE_MSI` (`true` in any case) and
    /// `USER_ASSIGNED_MSI_CLIENT_ID`, looked up through `env`.
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Self {
        let text = |key: &str| env(key).unwrap_or_default();
        Self {
            cloud: text("CLOUD"),
            tenant_id: text("TENANT_ID"),
            aad_client_id: text("CLIENT_ID"),
            aad_client_secret: env("CLIENT_SECRET").map(SecretString::from),
            aad_client_cert_path: String::new(),
            aad_client_cert_password: None,
            subscription_id: text("SUBSCRIPTION_ID"),
            resource_group: text("RESOURCE_GROUP"),
            vm_type: text("VM_TYPE"),
            use_managed_identity_extension: text("USE_MSI").eq_ignore_ascii_case("true"),
            user_assigned_identity_id: text("USER_ASSIGNED_MSI_CLIENT_ID"),
        }
    }

    /// Checks that the controller can work with this configuration: a cloud, a subscription,
    /// a resource group and a credential, naming everything missing at once.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut missing = Vec::new();
        for (key, value) in [
            ("cloud", &self.cloud),
            ("subscriptionId", &self.subscription_id),
            ("resourceGroup", &self.resource_group),
        ] {
            if value.trim().is_empty() {
                missing.push(key);
            }
        }
        match self.auth() {
            Ok(_) => {}
            Err(ConfigError::Missing(keys)) => missing.extend(keys),
            Err(e) => return Err(e),
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Missing(missing))
        }
    }

    /// The ARM credential, in upstream's order of preference: managed identity, then a client
    /// secret, then a client certificate.
    pub fn auth(&self) -> Result<ArmAuth, ConfigError> {
        if self.use_managed_identity_extension {
            let id = self.user_assigned_identity_id.trim();
            return Ok(ArmAuth::ManagedIdentity {
                client_id: (!id.is_empty()).then(|| id.to_string()),
            });
        }
        let present = |s: &Option<SecretString>| {
            s.as_ref()
                .filter(|s| !s.expose_secret().is_empty())
                .cloned()
        };
        let principal = || {
            let mut missing = Vec::new();
            if self.tenant_id.trim().is_empty() {
                missing.push("tenantId");
            }
            if self.aad_client_id.trim().is_empty() {
                missing.push("aadClientId");
            }
            if missing.is_empty() {
                Ok((
                    self.tenant_id.trim().to_string(),
                    self.aad_client_id.trim().to_string(),
                ))
            } else {
                Err(ConfigError::Missing(missing))
            }
        };
        if let Some(secret) = present(&self.aad_client_secret) {
            let (tenant_id, client_id) = principal()?;
            return Ok(ArmAuth::ClientSecret {
                tenant_id,
                client_id,
                secret,
            });
        }
        if let (false, Some(password)) = (
            self.aad_client_cert_path.trim().is_empty(),
            present(&self.aad_client_cert_password),
        ) {
            let (tenant_id, client_id) = principal()?;
            return Ok(ArmAuth::ClientCertificate {
                tenant_id,
                client_id,
                path: PathBuf::from(self.aad_client_cert_path.trim()),
                password,
            });
        }
        Err(ConfigError::NoCredential)
    }
}

/// Why the configured credential could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum CredentialSetupError {
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error("reading the client certificate {path}: {source}")]
    ReadCertificate {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the client certificate {path}: {source}")]
    Certificate {
        path: PathBuf,
        #[source]
        source: CertificateError,
    },
}

impl ArmAuth {
    /// The credential this configuration names: IMDS at `imds_endpoint` (production passes
    /// [`crate::credential::IMDS_ENDPOINT`]) or the cloud's Entra ID, through its v1 endpoint
    /// as upstream's controller used it. Reads the certificate file, if any.
    pub fn credential(
        &self,
        cloud: &CloudEnvironment,
        options: &HttpOptions,
        imds_endpoint: Url,
    ) -> Result<Credential, CredentialSetupError> {
        let principal =
            |tenant_id: &str, client_id: &str, auth| -> Result<Credential, CredentialSetupError> {
                Ok(Credential::ServicePrincipal(
                    ServicePrincipalCredential::new(
                        options.https_client()?,
                        cloud.active_directory_endpoint.clone(),
                        tenant_id,
                        client_id,
                        auth,
                        EntraEndpoint::V1,
                    ),
                ))
            };
        match self {
            ArmAuth::ManagedIdentity { client_id } => Ok(Credential::ManagedIdentity {
                imds: ImdsClient::new(options, imds_endpoint)?,
                selector: client_id
                    .clone()
                    .map_or(IdentitySelector::Default, IdentitySelector::ClientId),
            }),
            ArmAuth::ClientSecret {
                tenant_id,
                client_id,
                secret,
            } => principal(tenant_id, client_id, ClientAuth::Secret(secret.clone())),
            ArmAuth::ClientCertificate {
                tenant_id,
                client_id,
                path,
                password,
            } => {
                let bytes = std::fs::read(path).map_err(|source| {
                    CredentialSetupError::ReadCertificate {
                        path: path.clone(),
                        source,
                    }
                })?;
                let certificate = ClientCertificate::from_pkcs12(&bytes, password.expose_secret())
                    .map_err(|source| CredentialSetupError::Certificate {
                        path: path.clone(),
                        source,
                    })?;
                principal(
                    tenant_id,
                    client_id,
                    ClientAuth::Certificate(Arc::new(certificate)),
                )
            }
        }
    }
}

/// `<set>`/`<unset>` for a secret: whether it is there, never what it is.
fn presence(secret: &Option<SecretString>) -> &'static str {
    match secret {
        Some(s) if !s.expose_secret().is_empty() => "<set>",
        _ => "<unset>",
    }
}

impl fmt::Debug for CloudConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CloudConfig")
            .field("cloud", &self.cloud)
            .field("tenant_id", &self.tenant_id)
            .field("aad_client_id", &self.aad_client_id)
            .field("aad_client_secret", &presence(&self.aad_client_secret))
            .field("aad_client_cert_path", &self.aad_client_cert_path)
            .field(
                "aad_client_cert_password",
                &presence(&self.aad_client_cert_password),
            )
            .field("subscription_id", &self.subscription_id)
            .field("resource_group", &self.resource_group)
            .field("vm_type", &self.vm_type)
            .field(
                "use_managed_identity_extension",
                &self.use_managed_identity_extension,
            )
            .field("user_assigned_identity_id", &self.user_assigned_identity_id)
            .finish()
    }
}

impl fmt::Debug for ArmAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArmAuth::ManagedIdentity { client_id } => f
                .debug_struct("ManagedIdentity")
                .field("client_id", client_id)
                .finish(),
            ArmAuth::ClientSecret {
                tenant_id,
                client_id,
                ..
            } => f
                .debug_struct("ClientSecret")
                .field("tenant_id", tenant_id)
                .field("client_id", client_id)
                .field("secret", &"<redacted>")
                .finish(),
            ArmAuth::ClientCertificate {
                tenant_id,
                client_id,
                path,
                ..
            } => f
                .debug_struct("ClientCertificate")
                .field("tenant_id", tenant_id)
                .field("client_id", client_id)
                .field("path", path)
                .field("password", &"<redacted>")
                .finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::path::Path;

    const AKS: &[u8] = br#"{
        "cloud": "AzurePublicCloud",
        "tenantId": "72f988bf-86f1-41af-91ab-2d7cd011db47",
        "subscriptionId": "6a1c4b1e-2f0d-4c5e-9a7b-3d2e1f0a9b8c",
        "aadClientId": "msi",
        "aadClientSecret": "msi",
        "resourceGroup": "MC_rg_aks_eastus",
        "location": "eastus",
        "vmType": "vmss",
        "useManagedIdentityExtension": true,
        "userAssignedIdentityID": "5d0e8f3a-7c21-4b9e-a6d4-1f2e3c4b5a69",
        "cloudProviderBackoff": true,
        "maximumLoadBalancerRuleCount": 250
    }"#;

    #[test]
    fn an_aks_azure_json_reads_and_prefers_the_managed_identity() {
        let config = CloudConfig::from_azure_json(AKS).unwrap();
        assert_eq!(config.cloud, "AzurePublicCloud");
        assert_eq!(
            config.subscription_id,
            "6a1c4b1e-2f0d-4c5e-9a7b-3d2e1f0a9b8c"
        );
        assert_eq!(config.resource_group, "MC_rg_aks_eastus");
        assert_eq!(config.vm_type, "vmss");
        assert!(config.use_managed_identity_extension);
        config.validate().unwrap();
        assert!(matches!(
            config.auth().unwrap(),
            ArmAuth::ManagedIdentity { client_id: Some(id) } if id == "5d0e8f3a-7c21-4b9e-a6d4-1f2e3c4b5a69"
        ));
    }

    #[test]
    fn yaml_is_accepted_and_keys_are_case_sensitive() {
        let config = CloudConfig::from_azure_json(
            b"cloud: AzureStackCloud\nTenantId: ignored\ntenantId: t\naadClientId: c\naadClientSecret: s\nsubscriptionId: sub\nresourceGroup: rg\n",
        )
        .unwrap();
        assert_eq!(config.tenant_id, "t");
        assert!(matches!(
            config.auth().unwrap(),
            ArmAuth::ClientSecret { tenant_id, client_id, secret }
                if tenant_id == "t" && client_id == "c" && secret.expose_secret() == "s"
        ));
    }

    #[test]
    fn a_certificate_is_used_when_there_is_no_secret() {
        let config = CloudConfig::from_azure_json(
            br#"{"cloud":"AzureCloud","tenantId":"t","aadClientId":"c","aadClientSecret":"",
                "aadClientCertPath":"/etc/kubernetes/sp.pfx","aadClientCertPassword":"pw",
                "subscriptionId":"s","resourceGroup":"rg"}"#,
        )
        .unwrap();
        assert!(matches!(
            config.auth().unwrap(),
            ArmAuth::ClientCertificate { path, password, .. }
                if path == Path::new("/etc/kubernetes/sp.pfx") && password.expose_secret() == "pw"
        ));
    }

    #[test]
    fn a_system_assigned_identity_has_no_client_id() {
        let config = CloudConfig::from_azure_json(
            br#"{"useManagedIdentityExtension":true,"userAssignedIdentityID":" "}"#,
        )
        .unwrap();
        assert!(matches!(
            config.auth().unwrap(),
            ArmAuth::ManagedIdentity { client_id: None }
        ));
    }

    #[test]
    fn validation_names_everything_missing() {
        let config = CloudConfig::from_azure_json(br#"{"aadClientSecret":"s"}"#).unwrap();
        assert_eq!(
            config.validate().unwrap_err().to_string(),
            "the cloud configuration lacks cloud, subscriptionId, resourceGroup, tenantId, aadClientId"
        );
        let none = CloudConfig::from_azure_json(
            br#"{"cloud":"x","subscriptionId":"s","resourceGroup":"r"}"#,
        )
        .unwrap();
        assert!(matches!(none.validate(), Err(ConfigError::NoCredential)));
        let cert_without_password =
            CloudConfig::from_azure_json(br#"{"aadClientCertPath":"p"}"#).unwrap();
        assert!(matches!(
            cert_without_password.auth(),
            Err(ConfigError::NoCredential)
        ));
    }

    #[test]
    fn parse_errors_never_quote_values() {
        let err =
            CloudConfig::from_azure_json(br#"{"aadClientSecret": ["hunter2"], "cloud": "x"}"#)
                .unwrap_err();
        let text = err.to_string();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(matches!(err, ConfigError::Parse { line: 1, .. }), "{err:?}");
        assert!(CloudConfig::from_azure_json(b"{").is_err());
    }

    #[test]
    fn debug_output_redacts_secrets() {
        let config = CloudConfig::from_azure_json(
            br#"{"aadClientSecret":"hunter2","aadClientCertPassword":"pfx-pass","tenantId":"t","aadClientId":"c"}"#,
        )
        .unwrap();
        let debug = format!("{config:?}");
        assert!(
            !debug.contains("hunter2") && !debug.contains("pfx-pass"),
            "{debug}"
        );
        assert!(debug.contains("aad_client_secret: \"<set>\""), "{debug}");
        assert!(
            debug.contains("aad_client_cert_password: \"<set>\""),
            "{debug}"
        );
        let auth = format!("{:?}", config.auth().unwrap());
        assert!(!auth.contains("hunter2"), "{auth}");
        assert!(format!("{:?}", CloudConfig::default()).contains("aad_client_secret: \"<unset>\""));
    }

    fn setup(auth: &ArmAuth) -> Result<Credential, CredentialSetupError> {
        let cloud = CloudEnvironment::built_in("AzurePublicCloud").unwrap();
        let imds = Url::parse("http://127.0.0.1:9").unwrap();
        auth.credential(&cloud, &HttpOptions::default(), imds)
    }

    #[test]
    fn the_configured_credential_is_built() {
        let mi = setup(&ArmAuth::ManagedIdentity {
            client_id: Some("c".into()),
        })
        .unwrap();
        assert!(
            matches!(mi, Credential::ManagedIdentity { selector: IdentitySelector::ClientId(c), .. } if c == "c")
        );
        let system = setup(&ArmAuth::ManagedIdentity { client_id: None }).unwrap();
        assert!(matches!(
            system,
            Credential::ManagedIdentity {
                selector: IdentitySelector::Default,
                ..
            }
        ));
        let sp = setup(&ArmAuth::ClientSecret {
            tenant_id: "t".into(),
            client_id: "c".into(),
            secret: SecretString::from("s"),
        })
        .unwrap();
        assert!(
            matches!(sp, Credential::ServicePrincipal(p) if p.client_id() == "c" && p.tenant_id() == "t")
        );
    }

    #[test]
    fn certificate_files_are_read_and_their_errors_named() {
        let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/seed-sp.p12");
        let cert = |path: PathBuf, password: &str| ArmAuth::ClientCertificate {
            tenant_id: "t".into(),
            client_id: "c".into(),
            path,
            password: SecretString::from(password),
        };
        assert!(matches!(
            setup(&cert(fixture.clone(), "podid-test")),
            Ok(Credential::ServicePrincipal(_))
        ));
        let wrong = setup(&cert(fixture.clone(), "wrong")).unwrap_err();
        assert!(
            matches!(wrong, CredentialSetupError::Certificate { .. }),
            "{wrong:?}"
        );
        assert!(wrong.to_string().contains("seed-sp.p12"), "{wrong}");
        let missing = setup(&cert(fixture.with_file_name("absent.p12"), "x")).unwrap_err();
        assert!(
            matches!(missing, CredentialSetupError::ReadCertificate { .. }),
            "{missing:?}"
        );
    }

    #[test]
    fn the_environment_variant_reads_upstreams_variables() {
        let vars: HashMap<&str, &str> = [
            ("CLOUD", "AzurePublicCloud"),
            ("TENANT_ID", "t"),
            ("CLIENT_ID", "c"),
            ("CLIENT_SECRET", "s"),
            ("SUBSCRIPTION_ID", "sub"),
            ("RESOURCE_GROUP", "rg"),
            ("VM_TYPE", "vmss"),
            ("USE_MSI", "TRUE"),
            ("USER_ASSIGNED_MSI_CLIENT_ID", "mi"),
        ]
        .into_iter()
        .collect();
        let config = CloudConfig::from_env(|k| vars.get(k).map(|v| v.to_string()));
        assert_eq!(config.cloud, "AzurePublicCloud");
        assert_eq!(config.tenant_id, "t");
        assert_eq!(config.aad_client_id, "c");
        assert_eq!(config.subscription_id, "sub");
        assert_eq!(config.resource_group, "rg");
        assert_eq!(config.vm_type, "vmss");
        assert!(config.use_managed_identity_extension);
        assert!(matches!(
            config.auth().unwrap(),
            ArmAuth::ManagedIdentity { client_id: Some(id) } if id == "mi"
        ));
        config.validate().unwrap();

        let secret_only = CloudConfig::from_env(|k| match k {
            "USE_MSI" => Some("yes".into()),
            "CLIENT_SECRET" => Some("s".into()),
            "TENANT_ID" | "CLIENT_ID" => Some("x".into()),
            _ => None,
        });
        assert!(
            !secret_only.use_managed_identity_extension,
            "only `true` turns MSI on"
        );
        assert!(matches!(
            secret_only.auth().unwrap(),
            ArmAuth::ClientSecret { .. }
        ));
    }
}
