//! `demo`: podid's equivalent of upstream's demo image (the one the seed's `pod-demo.yaml`
//! runs). Every period it gets a token for the pod's identity from IMDS (which NMI answers in a
//! cluster), lists the VMs of the resource group through ARM with it (and the instances of the
//! scale set it runs on), gets the machine's default token, and reads the instance metadata,
//! logging each result as upstream's demo did.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use podid_azure::arm::ArmClient;
use podid_azure::credential::{Credential, IMDS_ENDPOINT, IdentitySelector, ImdsClient};
use podid_azure::http::HttpOptions;
use url::Url;

/// Upstream's flags (v1.7.0, the image the seed runs), with v1.8's spellings as aliases, plus
/// the endpoints, which only tests change.
#[derive(Parser, Debug)]
#[command(name = "demo", version, about)]
struct Args {
    /// Subscription of the resource group whose VMs are listed.
    #[arg(long = "subscriptionid", alias = "subscription-id", default_value = "")]
    subscription_id: String,
    /// Client ID of the pod's user-assigned identity; empty asks IMDS for the default identity.
    #[arg(long = "clientid", alias = "identity-client-id", default_value = "")]
    client_id: String,
    /// A resource group the identity may read (Reader).
    #[arg(long = "resourcegroup", alias = "resource-group", default_value = "")]
    resource_group: String,
    /// Resource (audience) of the tokens.
    #[arg(
        long = "aad-resourcename",
        alias = "resource-name",
        default_value = "https://management.azure.com/"
    )]
    resource: String,
    /// Seconds between rounds.
    #[arg(long = "retry-wait-time", default_value_t = 20)]
    retry_wait_time: u64,
    /// IMDS address. In a pod, NMI intercepts the real one.
    #[arg(long, env = "PODID_DEMO_IMDS_ENDPOINT", default_value = IMDS_ENDPOINT)]
    imds_endpoint: Url,
    /// ARM address.
    #[arg(
        long,
        env = "PODID_DEMO_ARM_ENDPOINT",
        default_value = "https://management.azure.com/"
    )]
    arm_endpoint: Url,
    /// A PEM CA to trust for ARM besides the system's (an emulator's). The env var is
    /// OpenSSL's, as MIC's and most clients' is, so one setting serves every pod of a lab.
    #[arg(long, env = "SSL_CERT_FILE")]
    ca_file: Option<PathBuf>,
    /// Stop after this many rounds; 0 runs until killed, as upstream's did.
    #[arg(long, default_value_t = 0)]
    rounds: u64,
}

/// Upstream's demo waited this long for IMDS and ARM.
const TIMEOUT: Duration = Duration::from_secs(80);
/// The instance metadata api-version upstream's demo asked for.
const INSTANCE_API_VERSION: &str = "2017-08-01";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        // Colours only on a terminal: a container's log is a file.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    let env = |key: &str| std::env::var(key).unwrap_or_default();
    tracing::info!(
        "starting demo pod {}/{} {}",
        env("MY_POD_NAMESPACE"),
        env("MY_POD_NAME"),
        env("MY_POD_IP")
    );
    let demo = Demo::new(&args)?;
    let mut round = 0;
    loop {
        demo.round().await;
        round += 1;
        if args.rounds != 0 && round >= args.rounds {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(args.retry_wait_time)).await;
    }
}

struct Demo {
    imds: ImdsClient,
    imds_http: reqwest::Client,
    arm: ArmClient,
    selector: IdentitySelector,
    resource: String,
    subscription_id: String,
    resource_group: String,
}

impl Demo {
    fn new(args: &Args) -> anyhow::Result<Self> {
        let mut options = HttpOptions {
            timeout: TIMEOUT,
            ..HttpOptions::default()
        };
        if let Some(ca) = &args.ca_file {
            options = options
                .trusting_ca_file(ca)
                .with_context(|| format!("reading the CA file {}", ca.display()))?;
        }
        let imds = ImdsClient::new(&options, args.imds_endpoint.clone())?;
        let selector = if args.client_id.is_empty() {
            IdentitySelector::Default
        } else {
            IdentitySelector::ClientId(args.client_id.clone())
        };
        let arm = ArmClient::new(
            options.https_client()?,
            args.arm_endpoint.clone(),
            Credential::ManagedIdentity {
                imds: imds.clone(),
                selector: selector.clone(),
            },
            &args.resource,
        );
        Ok(Self {
            imds,
            imds_http: options.imds_client()?,
            arm,
            selector,
            resource: args.resource.clone(),
            subscription_id: args.subscription_id.clone(),
            resource_group: args.resource_group.clone(),
        })
    }

    /// One round; failures are logged, never fatal, as upstream's demo kept going.
    async fn round(&self) {
        let instance = self.instance_metadata().await;
        self.list_vms(instance.as_ref()).await;
        self.token(&IdentitySelector::Default).await;
        if self.selector != IdentitySelector::Default {
            self.token(&self.selector).await;
        }
    }

    async fn token(&self, selector: &IdentitySelector) {
        match self.imds.token(selector, &self.resource).await {
            Ok(token) => tracing::info!(
                ?selector,
                expires_on = ?token.fields().expires_on,
                "successfully acquired a token from IMDS"
            ),
            Err(error) => tracing::error!(?selector, %error, "failed to acquire a token from IMDS"),
        }
    }

    async fn list_vms(&self, instance: Option<&serde_json::Value>) {
        if self.subscription_id.is_empty() || self.resource_group.is_empty() {
            tracing::warn!("--subscriptionid or --resourcegroup is empty: not listing VMs");
            return;
        }
        match self
            .arm
            .list_virtual_machines(&self.subscription_id, &self.resource_group)
            .await
        {
            Ok(vms) => {
                tracing::info!("successfully counted VM from ARM: {}", vms.value.len());
                for vm in &vms.value {
                    tracing::info!(name = %vm.name, id = %vm.id, "VM");
                }
            }
            Err(error) => tracing::error!(%error, "failed list all vm"),
        }
        // AKS nodes are scale-set instances, which the VM list leaves out: list the instances of
        // the scale set this pod runs on when it is in the same group.
        let compute = instance.map(|doc| &doc["compute"]);
        let scale_set = compute
            .and_then(|c| c["vmScaleSetName"].as_str())
            .unwrap_or_default();
        let group = compute
            .and_then(|c| c["resourceGroupName"].as_str())
            .unwrap_or_default();
        if scale_set.is_empty() || !group.eq_ignore_ascii_case(&self.resource_group) {
            return;
        }
        match self
            .arm
            .list_scale_set_instances(&self.subscription_id, &self.resource_group, scale_set)
            .await
        {
            Ok(instances) => {
                tracing::info!(
                    scale_set,
                    "successfully counted scale set VMs from ARM: {}",
                    instances.value.len()
                );
                for vm in &instances.value {
                    tracing::info!(name = %vm.name, id = %vm.id, "scale set VM");
                }
            }
            Err(error) => tracing::error!(scale_set, %error, "failed to list the scale set's VMs"),
        }
    }

    async fn instance_metadata(&self) -> Option<serde_json::Value> {
        let mut url = self.imds.endpoint().clone();
        url.set_path("/metadata/instance");
        url.set_query(Some(&format!("api-version={INSTANCE_API_VERSION}")));
        let answer = async {
            let response = self
                .imds_http
                .get(url.clone())
                .header("Metadata", "true")
                .send()
                .await?
                .error_for_status()?;
            response.text().await
        }
        .await;
        match answer {
            Ok(body) => {
                tracing::info!("successfully made GET on instance metadata, {body}");
                serde_json::from_str(&body).ok()
            }
            Err(error) => {
                tracing::error!(%url, error = %error.without_url(), "failed GET on instance metadata");
                None
            }
        }
    }
}
