//! Listing compute resources: the VMs of a resource group and the instances of a scale set.
//! Only what the demo app logs (name and ID) is read; every page is followed, and a `nextLink`
//! must stay on the ARM host of the request, so the bearer token never goes elsewhere.

use reqwest::Method;
use serde::Deserialize;
use url::Url;

use super::{ArmClient, ArmError, ArmResponse, COMPUTE_API_VERSION, RateLimits};
use crate::credential::read::url_without_query;

/// A listed VM or scale-set instance.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ListedMachine {
    pub name: String,
    pub id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Page {
    #[serde(default)]
    value: Vec<ListedMachine>,
    #[serde(default)]
    next_link: Option<String>,
}

/// Pages a list may have before it is refused: a guard against a `nextLink` loop.
const MAX_PAGES: usize = 100;

impl ArmClient {
    /// `GET …/resourceGroups/{group}/providers/Microsoft.Compute/virtualMachines`.
    pub async fn list_virtual_machines(
        &self,
        subscription_id: &str,
        resource_group: &str,
    ) -> Result<ArmResponse<Vec<ListedMachine>>, ArmError> {
        self.list(&format!(
            "/subscriptions/{subscription_id}/resourceGroups/{resource_group}/providers/Microsoft.Compute/virtualMachines"
        ))
        .await
    }

    /// `GET …/virtualMachineScaleSets/{scale_set}/virtualMachines`: the scale set's instances.
    pub async fn list_scale_set_instances(
        &self,
        subscription_id: &str,
        resource_group: &str,
        scale_set: &str,
    ) -> Result<ArmResponse<Vec<ListedMachine>>, ArmError> {
        self.list(&format!(
            "/subscriptions/{subscription_id}/resourceGroups/{resource_group}/providers/Microsoft.Compute/virtualMachineScaleSets/{scale_set}/virtualMachines"
        ))
        .await
    }

    async fn list(&self, path: &str) -> Result<ArmResponse<Vec<ListedMachine>>, ArmError> {
        let mut url = self.base.clone();
        url.set_path(&format!("{}{path}", self.base.path().trim_end_matches('/')));
        url.set_query(Some(&format!("api-version={COMPUTE_API_VERSION}")));
        let mut machines = Vec::new();
        let mut rate_limits = RateLimits::default();
        for _ in 0..MAX_PAGES {
            let answer = self.call(Method::GET, &url, None).await?;
            rate_limits.merge(answer.rate_limits.clone());
            let invalid = |reason: String| ArmError::InvalidResponse {
                url: url_without_query(&url),
                reason,
            };
            let page: Page = serde_json::from_slice(&answer.body)
                .map_err(|e| invalid(format!("not a list of machines: {e}")))?;
            machines.extend(page.value);
            match page.next_link.filter(|link| !link.is_empty()) {
                None => {
                    return Ok(ArmResponse {
                        value: machines,
                        rate_limits,
                    });
                }
                Some(link) => url = same_host(&self.base, &link).map_err(invalid)?,
            }
        }
        Err(ArmError::InvalidResponse {
            url: url_without_query(&url),
            reason: format!("more than {MAX_PAGES} pages"),
        })
    }
}

/// `link` if it is on `base`'s scheme, host and port.
fn same_host(base: &Url, link: &str) -> Result<Url, String> {
    let url = Url::parse(link).map_err(|e| format!("nextLink {link:?} is not a URL: {e}"))?;
    if url.scheme() == base.scheme()
        && url.host_str() == base.host_str()
        && url.port_or_known_default() == base.port_or_known_default()
    {
        Ok(url)
    } else {
        Err(format!(
            "nextLink {} is not on the ARM host {}",
            url_without_query(&url),
            url_without_query(base)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_links_must_stay_on_the_arm_host() {
        let base = Url::parse("https://127.0.0.1:9443/").unwrap();
        assert!(same_host(&base, "https://127.0.0.1:9443/subscriptions/s?page=2").is_ok());
        for other in [
            "https://127.0.0.2:9443/x",
            "http://127.0.0.1:9443/x",
            "https://127.0.0.1:9444/x",
            "not a url",
        ] {
            assert!(same_host(&base, other).is_err(), "{other}");
        }
        let default_port = Url::parse("https://management.azure.com").unwrap();
        assert!(same_host(&default_port, "https://management.azure.com:443/next").is_ok());
    }

    #[test]
    fn a_page_reads_names_ids_and_the_next_link() {
        let page: Page = serde_json::from_str(
            r#"{"value":[{"name":"vm-0","id":"/subscriptions/s/x","location":"japaneast"}],"nextLink":null}"#,
        )
        .unwrap();
        assert_eq!(page.value[0].name, "vm-0");
        assert!(page.next_link.is_none());
    }
}
