//! May this process own the instance metadata address 169.254.169.254? Only where owning it
//! cannot hijack a real machine's metadata service and where a client's packets to it cannot
//! leave the machine: in a network namespace that is not PID 1's, or, when PID 1's namespace
//! cannot be read (a sandbox that hides it), in a namespace with no route out.
//!
//! "No route out" is decided from the kernel's route tables (`/proc/net/route`, the IPv4 main
//! table, and `/proc/net/ipv6_route`, every IPv6 table), once at start: every route that can
//! carry a packet must be local, or on-link (no gateway) to a destination inside 127.0.0.0/8 or
//! 169.254.0.0/16, or ::1/128, fe80::/10 or ff00::/8 (the routes the kernel adds to any IPv6
//! link). So a namespace with only `lo` qualifies, as does a lab whose links between namespaces
//! use link-local addresses; a default route, a gateway, or any other subnet disqualifies it.
//! Unreadable or malformed tables disqualify it too: the check fails closed.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One route, reduced to what the decision needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub device: String,
    pub destination: IpAddr,
    pub prefix_len: u8,
    pub kind: RouteKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteKind {
    /// Down, or a reject route (unreachable, prohibit): carries nothing.
    Unusable,
    /// Delivers to this host (an own address, anycast).
    Local,
    /// Sends straight onto the device's link.
    OnLink,
    /// Sends to a gateway, which may forward anywhere.
    ViaGateway,
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let how = match self.kind {
            RouteKind::ViaGateway => " via a gateway",
            _ => "",
        };
        write!(
            f,
            "{}/{} dev {}{how}",
            self.destination, self.prefix_len, self.device
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line} of {file}: {problem}")]
pub struct RouteParseError {
    pub file: &'static str,
    pub line: usize,
    pub problem: String,
}

// Route flags from the kernel's <linux/route.h> and <linux/ipv6_route.h>.
const RTF_UP: u32 = 0x0001;
const RTF_GATEWAY: u32 = 0x0002;
const RTF_REJECT: u32 = 0x0200;
const RTF_ANYCAST: u32 = 0x0010_0000;
const RTF_LOCAL: u32 = 0x8000_0000;

fn kind_of(flags: u32) -> RouteKind {
    if flags & RTF_UP == 0 || flags & RTF_REJECT != 0 {
        RouteKind::Unusable
    } else if flags & (RTF_LOCAL | RTF_ANYCAST) != 0 {
        RouteKind::Local
    } else if flags & RTF_GATEWAY != 0 {
        RouteKind::ViaGateway
    } else {
        RouteKind::OnLink
    }
}

const IPV4_FILE: &str = "/proc/net/route";
const IPV6_FILE: &str = "/proc/net/ipv6_route";

/// Parses `/proc/net/route`: a header line, then `Iface Destination Gateway Flags RefCnt Use
/// Metric Mask …`, addresses as hex of the bytes in memory order. An empty file (a namespace
/// that never had an IPv4 route) has no header.
pub fn parse_ipv4_routes(text: &str) -> Result<Vec<Route>, RouteParseError> {
    let mut routes = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.is_empty() || (index == 0 && fields[0] == "Iface") {
            continue;
        }
        let problem = |problem: String| RouteParseError {
            file: IPV4_FILE,
            line: index + 1,
            problem,
        };
        let [
            device,
            destination,
            _gateway,
            flags,
            _refcnt,
            _use,
            _metric,
            mask,
            ..,
        ] = fields.as_slice()
        else {
            return Err(problem(format!("expected 8 or more fields: {line:?}")));
        };
        let hex = |name: &str, value: &str| {
            u32::from_str_radix(value, 16)
                .map_err(|_| problem(format!("{name} {value:?} is not hex")))
        };
        let address = |value: u32| Ipv4Addr::from(value.to_ne_bytes());
        let mask = address(hex("mask", mask)?);
        let prefix_len = u8::try_from(u32::from(mask).leading_ones()).unwrap_or(32);
        if u32::from(mask).count_ones() != u32::from(prefix_len) {
            return Err(problem(format!("mask {mask} is not a prefix")));
        }
        routes.push(Route {
            device: (*device).to_string(),
            destination: IpAddr::V4(address(hex("destination", destination)?)),
            prefix_len,
            kind: kind_of(hex("flags", flags)?),
        });
    }
    Ok(routes)
}

/// Parses `/proc/net/ipv6_route`: `dest dest_len src src_len next_hop metric refcnt use flags
/// device`, addresses as 32 hex digits, lengths and flags in hex.
pub fn parse_ipv6_routes(text: &str) -> Result<Vec<Route>, RouteParseError> {
    let mut routes = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.is_empty() {
            continue;
        }
        let problem = |problem: String| RouteParseError {
            file: IPV6_FILE,
            line: index + 1,
            problem,
        };
        let [
            destination,
            prefix_len,
            _src,
            _src_len,
            _next_hop,
            _metric,
            _refcnt,
            _use,
            flags,
            device,
        ] = fields.as_slice()
        else {
            return Err(problem(format!("expected 10 fields: {line:?}")));
        };
        let destination = u128::from_str_radix(destination, 16)
            .ok()
            .filter(|_| destination.len() == 32)
            .map(Ipv6Addr::from)
            .ok_or_else(|| problem(format!("destination {destination:?} is not 32 hex digits")))?;
        let prefix_len = u8::from_str_radix(prefix_len, 16)
            .ok()
            .filter(|len| *len <= 128)
            .ok_or_else(|| problem(format!("prefix length {prefix_len:?} is not 0..=0x80")))?;
        let flags = u32::from_str_radix(flags, 16)
            .map_err(|_| problem(format!("flags {flags:?} are not hex")))?;
        routes.push(Route {
            device: (*device).to_string(),
            destination: IpAddr::V6(destination),
            prefix_len,
            kind: kind_of(flags),
        });
    }
    Ok(routes)
}

/// Destinations an on-link route may reach without counting as a way out.
const CONTAINED: [(IpAddr, u8); 5] = [
    (IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)), 8),
    (IpAddr::V4(Ipv4Addr::new(169, 254, 0, 0)), 16),
    (IpAddr::V6(Ipv6Addr::LOCALHOST), 128),
    (IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0)), 10),
    (IpAddr::V6(Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0)), 8),
];

/// Whether the prefix `address/len` lies inside `range/range_len`.
fn within(address: IpAddr, len: u8, range: IpAddr, range_len: u8) -> bool {
    if len < range_len {
        return false;
    }
    match (address, range) {
        (IpAddr::V4(a), IpAddr::V4(r)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(range_len)).unwrap_or(0);
            u32::from(a) & mask == u32::from(r) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(r)) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(range_len))
                .unwrap_or(0);
            u128::from(a) & mask == u128::from(r) & mask
        }
        _ => false,
    }
}

/// The first route that could carry a packet out of the namespace, if any.
pub fn route_out(routes: &[Route]) -> Option<&Route> {
    routes.iter().find(|route| match route.kind {
        RouteKind::Unusable | RouteKind::Local => false,
        RouteKind::ViaGateway => true,
        RouteKind::OnLink => !CONTAINED
            .iter()
            .any(|(range, len)| within(route.destination, route.prefix_len, *range, *len)),
    })
}

/// Why the metadata address is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetadataRefusal {
    /// This is PID 1's network namespace: the machine's own.
    MachineNamespace,
    /// PID 1's namespace cannot be read and this one has a route out.
    RouteOut(Route),
    /// PID 1's namespace cannot be read, nor can this one's routes.
    RoutesUnreadable(String),
}

impl fmt::Display for MetadataRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MachineNamespace => f.write_str("this is the machine's own network namespace"),
            Self::RouteOut(route) => write!(
                f,
                "PID 1's network namespace cannot be compared and this namespace has a route \
                 out ({route})"
            ),
            Self::RoutesUnreadable(problem) => write!(
                f,
                "PID 1's network namespace cannot be compared and this namespace's routes \
                 cannot be read ({problem})"
            ),
        }
    }
}

/// The decision. `same_as_init`: whether this namespace is PID 1's (`None` when unreadable);
/// `routes`: this namespace's routes, or why they could not be read.
pub fn decide(
    same_as_init: Option<bool>,
    routes: Result<Vec<Route>, String>,
) -> Result<(), MetadataRefusal> {
    match same_as_init {
        Some(true) => Err(MetadataRefusal::MachineNamespace),
        Some(false) => Ok(()),
        None => {
            let routes = routes.map_err(MetadataRefusal::RoutesUnreadable)?;
            match route_out(&routes) {
                Some(route) => Err(MetadataRefusal::RouteOut(route.clone())),
                None => Ok(()),
            }
        }
    }
}

/// Reads this process's facts and decides.
pub fn metadata_address_allowed() -> Result<(), MetadataRefusal> {
    let same_as_init = match (
        std::fs::read_link("/proc/self/ns/net"),
        std::fs::read_link("/proc/1/ns/net"),
    ) {
        (Ok(own), Ok(init)) => Some(own == init),
        _ => None,
    };
    decide(same_as_init, read_routes())
}

fn read_routes() -> Result<Vec<Route>, String> {
    let read = |path: &str| match std::fs::read_to_string(path) {
        Ok(text) => Ok(text),
        // No such table: the kernel has no IPv6 (or no IPv4) routing at all.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(format!("{path}: {e}")),
    };
    let mut routes = parse_ipv4_routes(&read(IPV4_FILE)?).map_err(|e| e.to_string())?;
    routes.extend(parse_ipv6_routes(&read(IPV6_FILE)?).map_err(|e| e.to_string())?);
    Ok(routes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This machine's own tables: a default route on eth0 for both families.
    const HOST_V4: &str = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
        eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
        eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
    const HOST_V6: &str = "\
fd000000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0
fe800000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000002 00000000 00000001     eth0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 fd000000000000000000000000000001 00000400 00000002 00000000 00000003     eth0
00000000000000000000000000000001 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000002 00000000 80200001       lo
ff000000000000000000000000000000 08 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000003 00000000 00000001     eth0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo
";
    /// A fresh namespace with `lo` up and 169.254.169.254/32 on it: no IPv4 main routes (the
    /// file is empty), IPv6 only ::1 and the kernel's null routes.
    const LAB_V6: &str = "\
00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo
00000000000000000000000000000001 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000002 00000000 80200001       lo
00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo
";

    fn routes(v4: &str, v6: &str) -> Vec<Route> {
        let mut all = parse_ipv4_routes(v4).expect("IPv4 table");
        all.extend(parse_ipv6_routes(v6).expect("IPv6 table"));
        all
    }

    fn route(device: &str, destination: &str, prefix_len: u8, kind: RouteKind) -> Route {
        Route {
            device: device.into(),
            destination: destination.parse().expect("an address"),
            prefix_len,
            kind,
        }
    }

    #[test]
    fn ipv4_rows_parse_into_prefixes_and_kinds() {
        let parsed = parse_ipv4_routes(HOST_V4).expect("valid");
        assert_eq!(
            parsed,
            [
                route("eth0", "0.0.0.0", 0, RouteKind::ViaGateway),
                route("eth0", "192.0.2.0", 24, RouteKind::OnLink),
            ]
        );
        assert_eq!(parse_ipv4_routes("").expect("empty"), []);
    }

    #[test]
    fn ipv6_rows_parse_and_null_routes_are_unusable() {
        let parsed = parse_ipv6_routes(LAB_V6).expect("valid");
        assert_eq!(
            parsed,
            [
                route("lo", "::", 0, RouteKind::Unusable),
                route("lo", "::1", 128, RouteKind::Local),
                route("lo", "::", 0, RouteKind::Unusable),
            ]
        );
    }

    #[test]
    fn malformed_tables_are_errors_naming_the_line() {
        let short = parse_ipv4_routes("Iface\tDestination\neth0\t00000000\n").expect_err("short");
        assert_eq!((short.file, short.line), (IPV4_FILE, 2));
        let not_hex = parse_ipv4_routes("eth0 zz 0 1 0 0 0 0\n").expect_err("hex");
        assert!(not_hex.problem.contains("destination"), "{not_hex}");
        let holey = parse_ipv4_routes("eth0 00000000 0 1 0 0 0 FF00FF00\n").expect_err("mask");
        assert!(holey.problem.contains("not a prefix"), "{holey}");
        assert!(parse_ipv6_routes("0000 80 x\n").is_err());
        assert!(
            parse_ipv6_routes(&LAB_V6.replacen(" 00 ", " 81 ", 1)).is_err(),
            "prefix longer than 128"
        );
    }

    #[test]
    fn the_machines_own_tables_have_a_route_out() {
        let all = routes(HOST_V4, HOST_V6);
        assert_eq!(
            route_out(&all),
            Some(&route("eth0", "0.0.0.0", 0, RouteKind::ViaGateway))
        );
        // Without the IPv4 default route, its subnet is still a way out.
        let subnet_only = routes(
            &HOST_V4.replace(
                "eth0\t00000000\t010200C0\t0003",
                "eth0\t00000000\t010200C0\t0000",
            ),
            "",
        );
        assert_eq!(
            route_out(&subnet_only).map(|r| r.destination.to_string()),
            Some("192.0.2.0".into())
        );
        // Nor is an IPv6 default route ignored when IPv4 is clean.
        assert_eq!(
            route_out(&routes("", HOST_V6)).map(|r| (r.destination.to_string(), r.prefix_len)),
            Some(("fd00::".into(), 64))
        );
    }

    #[test]
    fn a_namespace_with_only_loopback_has_no_route_out() {
        assert_eq!(route_out(&routes("", LAB_V6)), None);
    }

    #[test]
    fn link_local_links_are_contained_and_everything_else_is_not() {
        let contained = [
            route("veth0", "169.254.1.0", 24, RouteKind::OnLink),
            route("lo", "127.0.0.0", 8, RouteKind::OnLink),
            route("veth0", "fe80::", 64, RouteKind::OnLink),
            route("veth0", "ff00::", 8, RouteKind::OnLink),
            route("veth0", "10.0.0.1", 32, RouteKind::Local),
            route("eth0", "0.0.0.0", 0, RouteKind::Unusable),
        ];
        assert_eq!(route_out(&contained), None);
        for escape in [
            route("veth0", "169.254.0.0", 15, RouteKind::OnLink),
            route("veth0", "169.254.1.0", 24, RouteKind::ViaGateway),
            route("lo", "0.0.0.0", 0, RouteKind::OnLink),
            route("veth0", "10.240.0.0", 24, RouteKind::OnLink),
            route("veth0", "fe00::", 7, RouteKind::OnLink),
            route("veth0", "2001:db8::", 64, RouteKind::OnLink),
            route("veth0", "::", 0, RouteKind::OnLink),
        ] {
            let with = [contained.to_vec(), vec![escape.clone()]].concat();
            assert_eq!(route_out(&with), Some(&escape), "{escape}");
        }
    }

    #[test]
    fn the_decision_fails_closed() {
        let lab = || Ok(routes("", LAB_V6));
        let host = || Ok(routes(HOST_V4, HOST_V6));
        assert_eq!(
            decide(Some(false), host()),
            Ok(()),
            "a namespace a test made"
        );
        assert_eq!(
            decide(Some(true), lab()),
            Err(MetadataRefusal::MachineNamespace)
        );
        assert_eq!(decide(None, lab()), Ok(()));
        assert!(matches!(
            decide(None, host()),
            Err(MetadataRefusal::RouteOut(_))
        ));
        assert_eq!(
            decide(None, Err("denied".into())),
            Err(MetadataRefusal::RoutesUnreadable("denied".into()))
        );
        let message = decide(None, host()).expect_err("refused").to_string();
        assert!(
            message.contains("0.0.0.0/0 dev eth0 via a gateway"),
            "{message}"
        );
    }
}
