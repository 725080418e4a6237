//! The controller's cloud configuration: `azure.json` (JSON or YAML), the environment
//! variables of the no-azure.json deployment, and the cloud it names (built in, or a custom
//! environment file).
//!
//! Input: a selector byte, then (mod 4) 0 the bytes of `azure.json`; 1 `KEY=VALUE` lines, the
//! environment; 2 an environment file; 3 a cloud name, `\0`, an environment file.
//! Secrets never show in `Debug` output or errors; every accepted endpoint is an http(s) URL
//! with a host.

use std::collections::BTreeMap;

use podid_azure::cloud::{CUSTOM_CLOUD_NAME, CloudEnvironment};
use podid_azure::config::CloudConfig;
use secrecy::{ExposeSecret, SecretString};

use crate::split_nul;

pub fn run(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    match selector % 4 {
        0 => {
            if let Ok(config) = CloudConfig::from_azure_json(rest) {
                check_config(&config, std::str::from_utf8(rest).unwrap_or_default());
            }
        }
        1 => from_env(rest),
        2 => {
            let parsed = CloudEnvironment::from_environment_json(rest);
            if let Ok(cloud) = &parsed {
                check_cloud(cloud);
            }
            let resolved = CloudEnvironment::resolve(CUSTOM_CLOUD_NAME, Some(rest));
            assert_eq!(resolved.ok(), parsed.ok());
        }
        _ => {
            let (name, file) = split_nul(rest);
            let name = String::from_utf8_lossy(name);
            match CloudEnvironment::resolve(&name, Some(file)) {
                Ok(cloud) => check_cloud(&cloud),
                Err(error) => {
                    let _ = error.to_string();
                    assert!(CloudEnvironment::built_in(&name).is_none());
                }
            }
        }
    }
}

fn from_env(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let env: BTreeMap<&str, &str> = text
        .lines()
        .filter_map(|line| line.split_once('='))
        .collect();
    let config = CloudConfig::from_env(|key| env.get(key).map(|v| (*v).to_owned()));
    let value = |key: &str| env.get(key).copied().unwrap_or_default();
    assert_eq!(config.cloud, value("CLOUD"));
    assert_eq!(config.tenant_id, value("TENANT_ID"));
    assert_eq!(config.aad_client_id, value("CLIENT_ID"));
    assert_eq!(config.subscription_id, value("SUBSCRIPTION_ID"));
    assert_eq!(config.resource_group, value("RESOURCE_GROUP"));
    assert_eq!(config.vm_type, value("VM_TYPE"));
    assert_eq!(
        config.user_assigned_identity_id,
        value("USER_ASSIGNED_MSI_CLIENT_ID")
    );
    assert_eq!(
        config.use_managed_identity_extension,
        value("USE_MSI").eq_ignore_ascii_case("true")
    );
    check_config(&config, &text);
}

fn check_config(config: &CloudConfig, source: &str) {
    let _ = source;
    // What is shown of a configuration (`Debug`, errors, the credential it names) does not
    // depend on the secrets' values: the same configuration with other secrets shows the same.
    let shown = |config: &CloudConfig| {
        let mut text = format!("{config:?}");
        match config.validate() {
            Ok(()) => {
                assert!(
                    !config.cloud.trim().is_empty() && !config.subscription_id.trim().is_empty()
                );
            }
            Err(error) => text.push_str(&format!(" {error} {error:?}")),
        }
        match config.auth() {
            Ok(auth) => text.push_str(&format!(" {auth:?}")),
            Err(error) => text.push_str(&format!(" {error} {error:?}")),
        }
        text
    };
    let mut other = config.clone();
    let replace = |secret: &Option<SecretString>| {
        secret.as_ref().map(|s| {
            // Same emptiness, another value: emptiness decides which credential is named.
            let text = if s.expose_secret().is_empty() {
                ""
            } else {
                "other"
            };
            SecretString::from(text)
        })
    };
    other.aad_client_secret = replace(&config.aad_client_secret);
    other.aad_client_cert_password = replace(&config.aad_client_cert_password);
    assert_eq!(
        shown(config),
        shown(&other),
        "what is shown depends on a secret"
    );
    if let Ok(cloud) = CloudEnvironment::resolve(&config.cloud, None) {
        check_cloud(&cloud);
    }
}

fn check_cloud(cloud: &CloudEnvironment) {
    for url in [
        &cloud.resource_manager_endpoint,
        &cloud.active_directory_endpoint,
    ] {
        assert!(
            matches!(url.scheme(), "http" | "https") && url.has_host(),
            "{url}"
        );
    }
    assert!(cloud.active_directory_endpoint.path().ends_with('/'));
    assert_eq!(
        cloud.arm_audience(),
        cloud.resource_manager_endpoint.as_str()
    );
    assert!(!cloud.name.is_empty());
}
