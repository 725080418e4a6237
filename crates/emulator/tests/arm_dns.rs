//! Azure DNS through ARM, as ExternalDNS's Azure provider uses it (api-version 2018-05-01): the
//! seed world's zone `study4dev.example` in `study4dev-je`, listed, its record sets created,
//! listed, replaced and deleted by the ExternalDNS identity (Reader on the group, DNS Zone
//! Contributor on the zone), refused to others, paged by `nextLink`.

use podid_emulator::testing::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const API: &str = "2018-05-01";
const CLUSTER_RG: &str = "study4dev-je";
const ZONE: &str = "study4dev.example";
/// The seed's ExternalDNS identity.
const EXTERNAL_DNS: &str = "External-DNS-AKS-Study4Dev-JE";
/// The demo's identity: no role on the cluster's group.
const DEMO: &str = "DEMO";

fn zones_path(group: &str) -> String {
    format!(
        "/subscriptions/{SUBSCRIPTION}/resourceGroups/{group}/providers/Microsoft.Network/dnsZones"
    )
}

fn zone_path(zone: &str) -> String {
    format!("{}/{zone}", zones_path(CLUSTER_RG))
}

fn record_path(record_type: &str, name: &str) -> String {
    format!("{}/{record_type}/{name}", zone_path(ZONE))
}

/// One DNS request at ExternalDNS's api-version.
async fn dns(
    emu: &Emulator,
    method: Method,
    path: impl AsRef<str>,
    token: &str,
    body: Option<&Value>,
) -> Reply {
    emu.arm(method, &versioned(path.as_ref(), API), Some(token), body)
        .await
}

fn a_record(address: &str) -> Value {
    json!({"properties": {"TTL": 300, "ARecords": [{"ipv4Address": address}]}})
}

fn names(list: &Value) -> Vec<String> {
    list["value"]
        .as_array()
        .expect("a value array")
        .iter()
        .map(|rs| {
            format!(
                "{} {}",
                rs["type"].as_str().unwrap_or_default(),
                rs["name"].as_str().unwrap_or_default()
            )
        })
        .collect()
}

#[tokio::test]
async fn the_group_lists_the_seed_zone_as_azure_shows_it() {
    let emu = Emulator::start_seed().await;
    let token = emu.arm_token(EXTERNAL_DNS);
    let r = dns(&emu, Method::GET, zones_path(CLUSTER_RG), &token, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let zones = r.body["value"].as_array().expect("value");
    assert_eq!(zones.len(), 1);
    assert!(
        r.body.get("nextLink").is_none(),
        "one page has no nextLink: {}",
        r.body
    );
    let zone = &zones[0];
    assert_eq!(
        zone["id"],
        format!(
            "/subscriptions/{SUBSCRIPTION}/resourceGroups/{CLUSTER_RG}/providers/Microsoft.Network/dnszones/{ZONE}"
        )
    );
    assert_eq!(zone["name"], ZONE);
    assert_eq!(zone["type"], "Microsoft.Network/dnszones");
    assert_eq!(zone["location"], "global");
    assert_eq!(zone["properties"]["zoneType"], "Public");
    assert_eq!(zone["properties"]["numberOfRecordSets"], 2);
    assert_eq!(zone["properties"]["maxNumberOfRecordSets"], 10000);
    let servers = zone["properties"]["nameServers"]
        .as_array()
        .expect("name servers");
    assert_eq!(servers.len(), 4);
    assert!(servers.iter().all(|s| {
        s.as_str()
            .is_some_and(|s| s.contains(".azure-dns.") && s.ends_with('.'))
    }));

    let r = dns(&emu, Method::GET, zone_path(ZONE), &token, None).await;
    assert_eq!((r.status, &r.body), (StatusCode::OK, zone));

    // The node group holds no zone.
    emu.admin(
        Method::POST,
        "/admin/arm/role-assignments",
        Some(&json!({
            "principal": DEMO, "role": "Reader", "scope": format!("/subscriptions/{SUBSCRIPTION}"),
        })),
    )
    .await;
    let demo = emu.arm_token(DEMO);
    let node_group = "Study4Dev-JE-AKS-Study4Dev-JE-AKSResource";
    let r = dns(&emu, Method::GET, zones_path(node_group), &demo, None).await;
    assert_eq!(
        (r.status, r.body["value"].as_array().map(Vec::len)),
        (StatusCode::OK, Some(0))
    );
    let r = dns(&emu, Method::GET, zones_path("no-such-group"), &demo, None).await;
    r.assert_error(StatusCode::NOT_FOUND, "ResourceGroupNotFound");
    let r = dns(&emu, Method::GET, zone_path("other.example"), &demo, None).await;
    r.assert_error(StatusCode::NOT_FOUND, "ResourceNotFound");
    assert!(
        r.message()
            .contains("'Microsoft.Network/dnszones/other.example'"),
        "{}",
        r.message()
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn a_record_set_is_created_listed_replaced_and_deleted() {
    let emu = Emulator::start_seed().await;
    let token = emu.arm_token(EXTERNAL_DNS);
    let www = versioned(&record_path("A", "www"), API);

    let created = emu
        .arm(Method::PUT, &www, Some(&token), Some(&a_record("10.0.0.7")))
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(
        created.body["id"],
        format!(
            "/subscriptions/{SUBSCRIPTION}/resourceGroups/{CLUSTER_RG}/providers/Microsoft.Network/dnszones/{ZONE}/A/www"
        )
    );
    assert_eq!(created.body["name"], "www");
    assert_eq!(created.body["type"], "Microsoft.Network/dnszones/A");
    let properties = &created.body["properties"];
    assert_eq!(properties["TTL"], 300);
    assert_eq!(properties["fqdn"], format!("www.{ZONE}."));
    assert_eq!(properties["provisioningState"], "Succeeded");
    assert_eq!(properties["ARecords"], json!([{"ipv4Address": "10.0.0.7"}]));

    // ExternalDNS's ownership record: a TXT record set with metadata.
    let txt = json!({"properties": {"TTL": 300, "metadata": {"k": "v"},
                     "TXTRecords": [{"value": ["heritage=external-dns,external-dns/owner=lab"]}]}});
    let r = dns(
        &emu,
        Method::PUT,
        record_path("TXT", "a-www"),
        &token,
        Some(&txt),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["properties"]["metadata"], json!({"k": "v"}));

    let all = dns(
        &emu,
        Method::GET,
        format!("{}/all", zone_path(ZONE)),
        &token,
        None,
    )
    .await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.body);
    assert_eq!(
        names(&all.body),
        [
            "Microsoft.Network/dnszones/NS @",
            "Microsoft.Network/dnszones/SOA @",
            "Microsoft.Network/dnszones/TXT a-www",
            "Microsoft.Network/dnszones/A www",
        ]
    );
    let apex_ns = &all.body["value"][0]["properties"];
    assert_eq!(apex_ns["fqdn"], format!("{ZONE}."));
    assert_eq!(apex_ns["NSRecords"].as_array().map(Vec::len), Some(4));
    let by_type = dns(
        &emu,
        Method::GET,
        format!("{}/A", zone_path(ZONE)),
        &token,
        None,
    )
    .await;
    assert_eq!(names(&by_type.body), ["Microsoft.Network/dnszones/A www"]);

    let replaced = emu
        .arm(Method::PUT, &www, Some(&token), Some(&a_record("10.0.0.8")))
        .await;
    assert_eq!(replaced.status, StatusCode::OK, "{}", replaced.body);
    assert_ne!(
        replaced.body["etag"], created.body["etag"],
        "every write changes the etag"
    );
    let read = emu.arm(Method::GET, &www, Some(&token), None).await;
    assert_eq!((read.status, &read.body), (StatusCode::OK, &replaced.body));
    let zone = dns(&emu, Method::GET, zone_path(ZONE), &token, None).await;
    assert_eq!(zone.body["properties"]["numberOfRecordSets"], 4);

    let snapshot = emu.world().await;
    let zones = snapshot["dnsZones"].as_array().expect("dnsZones");
    assert_eq!(
        zones[0]["recordSets"][3]["properties"]["ARecords"][0]["ipv4Address"],
        "10.0.0.8"
    );

    assert_eq!(
        emu.arm(Method::DELETE, &www, Some(&token), None)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        emu.arm(Method::DELETE, &www, Some(&token), None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    let gone = emu.arm(Method::GET, &www, Some(&token), None).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    // Azure DNS answers this one itself, without ARM's envelope.
    assert_eq!(
        gone.body,
        json!({
            "code": "NotFound",
            "message": format!("The resource record 'www' does not exist in resource group '{CLUSTER_RG}' of subscription '{SUBSCRIPTION}'."),
        })
    );
    assert_eq!(emu.counter("arm.dns.recordset.put", 201).await, (3, 2));

    emu.reset().await;
    let r = dns(
        &emu,
        Method::GET,
        format!("{}/all", zone_path(ZONE)),
        &token,
        None,
    )
    .await;
    assert_eq!(
        r.body["value"].as_array().map(Vec::len),
        Some(2),
        "a reset leaves the zone as loaded"
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn only_the_roles_azure_requires_may_read_and_write() {
    let emu = Emulator::start_seed().await;
    let demo = emu.arm_token(DEMO);
    let demo_object = "2b3c4d5e-6f70-4182-9a3b-4c5d6e7f8091";
    let r = dns(&emu, Method::GET, zones_path(CLUSTER_RG), &demo, None).await;
    r.assert_error(StatusCode::FORBIDDEN, "AuthorizationFailed");
    assert_eq!(
        r.message(),
        format!(
            "The client 'cb5569f2-8d09-4de1-a007-e02058e11d15' with object id '{demo_object}' does not have \
         authorization to perform action 'Microsoft.Network/dnszones/read' over scope \
         '/subscriptions/{SUBSCRIPTION}/resourceGroups/{CLUSTER_RG}' or the scope is invalid. If \
         access was recently granted, please refresh your credentials."
        )
    );
    // RBAC comes before existence: a zone that does not exist is refused the same way.
    let r = dns(
        &emu,
        Method::PUT,
        format!("{}/A/x", zone_path("nope.example")),
        &demo,
        Some(&a_record("10.0.0.1")),
    )
    .await;
    r.assert_error(StatusCode::FORBIDDEN, "AuthorizationFailed");

    // Reader on the group reads, but writes nothing.
    emu.admin(Method::POST, "/admin/arm/role-assignments", Some(&json!({
        "principal": DEMO, "role": "Reader", "scope": format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/{CLUSTER_RG}"),
    })))
    .await;
    let r = dns(
        &emu,
        Method::GET,
        format!("{}/all", zone_path(ZONE)),
        &demo,
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = dns(
        &emu,
        Method::PUT,
        record_path("A", "www"),
        &demo,
        Some(&a_record("10.0.0.1")),
    )
    .await;
    r.assert_error(StatusCode::FORBIDDEN, "AuthorizationFailed");
    assert!(r.message().contains(&format!(
        "perform action 'Microsoft.Network/dnszones/A/write' over scope \
         '/subscriptions/{SUBSCRIPTION}/resourceGroups/{CLUSTER_RG}/providers/Microsoft.Network/dnszones/{ZONE}/A/www'"
    )), "{}", r.message());
    let r = dns(&emu, Method::DELETE, record_path("TXT", "x"), &demo, None).await;
    assert!(
        r.message()
            .contains("'Microsoft.Network/dnszones/TXT/delete'"),
        "{}",
        r.message()
    );

    // DNS Zone Contributor on the zone writes there, and only there.
    let external_dns = emu.arm_token(EXTERNAL_DNS);
    let r = dns(
        &emu,
        Method::PUT,
        record_path("cname", "alias"),
        &external_dns,
        Some(
            &json!({"properties": {"TTL": 60, "CNAMERecord": {"cname": "www.study4dev.example"}}}),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(
        r.body["id"].as_str().map(|id| id.ends_with("/CNAME/alias")),
        Some(true)
    );
    let r = dns(
        &emu,
        Method::PUT,
        format!("{}/A/x", zone_path("nope.example")),
        &external_dns,
        Some(&a_record("10.0.0.1")),
    )
    .await;
    r.assert_error(StatusCode::FORBIDDEN, "AuthorizationFailed");
    emu.shutdown().await;
}

#[tokio::test]
async fn record_sets_under_a_missing_zone_or_group_are_not_found() {
    let emu = Emulator::start_seed().await;
    emu.admin(Method::POST, "/admin/arm/role-assignments", Some(&json!({
        "principal": DEMO, "role": "DNS Zone Contributor", "scope": format!("/subscriptions/{SUBSCRIPTION}"),
    })))
    .await;
    let token = emu.arm_token(DEMO);
    let r = dns(
        &emu,
        Method::PUT,
        format!("{}/A/x", zone_path("nope.example")),
        &token,
        Some(&a_record("10.0.0.1")),
    )
    .await;
    r.assert_error(StatusCode::NOT_FOUND, "ParentResourceNotFound");
    assert_eq!(
        r.message(),
        "Can not perform requested operation on nested resource. Parent resource 'nope.example' not found."
    );
    let r = dns(
        &emu,
        Method::GET,
        format!("{}/all", zone_path("nope.example")),
        &token,
        None,
    )
    .await;
    r.assert_error(StatusCode::NOT_FOUND, "ParentResourceNotFound");
    let missing_group = format!("{}/{ZONE}/A/x", zones_path("no-such-group"));
    let r = dns(&emu, Method::DELETE, missing_group, &token, None).await;
    r.assert_error(StatusCode::NOT_FOUND, "ResourceGroupNotFound");
    emu.shutdown().await;
}

#[tokio::test]
async fn bodies_and_apex_record_sets_azure_refuses_are_refused() {
    let emu = Emulator::start_seed().await;
    let token = emu.arm_token(EXTERNAL_DNS);
    for (record_type, name, body) in [
        (
            "A",
            "x",
            json!({"properties": {"CNAMERecord": {"cname": "y"}}}),
        ),
        (
            "A",
            "x",
            json!({"properties": {"ARecords": [{"ipv4Address": "300.1.1.1"}]}}),
        ),
        (
            "CNAME",
            "@",
            json!({"properties": {"CNAMERecord": {"cname": "y"}}}),
        ),
        (
            "TXT",
            "x",
            json!({"properties": {"TXTRecords": [{"value": "not a list"}]}}),
        ),
    ] {
        let r = dns(
            &emu,
            Method::PUT,
            record_path(record_type, name),
            &token,
            Some(&body),
        )
        .await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, "BadRequest"),
            "{record_type} {name}: {}",
            r.body
        );
    }
    let r = dns(&emu, Method::DELETE, record_path("NS", "@"), &token, None).await;
    r.assert_error(StatusCode::BAD_REQUEST, "BadRequest");
    let r = dns(
        &emu,
        Method::PUT,
        record_path("SRV", "_sip._tcp"),
        &token,
        Some(&json!({})),
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::NOT_FOUND,
        "SRV is not modelled: {}",
        r.body
    );
    let r = emu
        .arm(
            Method::GET,
            &versioned(&zones_path(CLUSTER_RG), "2015-05-04-preview"),
            Some(&token),
            None,
        )
        .await;
    r.assert_error(StatusCode::BAD_REQUEST, "InvalidApiVersionParameter");
    emu.shutdown().await;
}

/// Every page of a list, following `nextLink` as the SDKs do, and the number of pages.
async fn all_pages(emu: &Emulator, token: &str, first: &str) -> (Vec<String>, usize) {
    let mut seen = Vec::new();
    let mut pages = 0;
    let mut url = emu.arm_url(first);
    loop {
        let r = emu.send(emu.https().get(&url).bearer_auth(token)).await;
        assert_eq!(r.status, StatusCode::OK, "{url}: {}", r.body);
        pages += 1;
        seen.extend(names(&r.body));
        match r.body.get("nextLink").and_then(Value::as_str) {
            Some(next) => url = next.to_string(),
            None => return (seen, pages),
        }
    }
}

#[tokio::test]
async fn lists_are_paged_by_next_link() {
    let emu = Emulator::start_seed().await;
    let token = emu.arm_token(EXTERNAL_DNS);
    for name in ["a", "b.sub", "c.sub", "d"] {
        let r = dns(
            &emu,
            Method::PUT,
            record_path("A", name),
            &token,
            Some(&a_record("10.0.0.1")),
        )
        .await;
        assert_eq!(r.status, StatusCode::CREATED);
    }
    let all = format!("{}/all", zone_path(ZONE));
    let (one_page, pages) = all_pages(&emu, &token, &versioned(&all, API)).await;
    assert_eq!((one_page.len(), pages), (6, 1));

    let (paged, pages) = all_pages(&emu, &token, &format!("{}&$top=1", versioned(&all, API))).await;
    assert_eq!((&paged, pages), (&one_page, 6));

    emu.set_knobs(json!({"arm": {"dnsPageSize": 4}})).await;
    let (paged, pages) = all_pages(&emu, &token, &versioned(&all, API)).await;
    assert_eq!((&paged, pages), (&one_page, 2));

    // The filter carries over to the next pages.
    let suffixed = format!(
        "{}&$top=1&$recordsetnamesuffix=sub",
        versioned(&format!("{}/recordsets", zone_path(ZONE)), API)
    );
    let (paged, pages) = all_pages(&emu, &token, &suffixed).await;
    assert_eq!(
        paged,
        [
            "Microsoft.Network/dnszones/A b.sub",
            "Microsoft.Network/dnszones/A c.sub"
        ]
    );
    assert_eq!(pages, 2);

    let r = emu
        .arm(
            Method::GET,
            &format!("{}&$top=0", versioned(&all, API)),
            Some(&token),
            None,
        )
        .await;
    r.assert_error(StatusCode::BAD_REQUEST, "BadRequest");
    let r = emu
        .arm(
            Method::GET,
            &format!("{}&$skipToken=not*base64", versioned(&all, API)),
            Some(&token),
            None,
        )
        .await;
    r.assert_error(StatusCode::BAD_REQUEST, "BadRequest");
    emu.shutdown().await;
}
