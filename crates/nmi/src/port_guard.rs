//! The port guard: NMI binds each pod's bridge port to the pod's own MAC and IPv4, so a pod
//! cannot claim another pod's address and be answered as that pod (CVE-2021-1677 class: NMI
//! knows a pod by its connection's source IP).
//!
//! Where the ports come from: the result cache libcni writes for every pod sandbox
//! (`<--cni-results-dir>/<network>-<containerID>-<ifname>`, containerd and CRI-O alike), whose
//! `result` names the host-side interface (no `sandbox`), the pod's interface (`sandbox`, `mac`)
//! and its addresses. A sandbox is guarded when it has one IPv4 address on its pod interface and
//! one host-side interface that is a bridge port (`/sys/class/net/<if>/brport`); routed CNIs
//! (no bridge) are not covered.
//!
//! What is installed: one nftables table, `bridge podid_nmi` ([`TABLE`]). Three sets hold the
//! guarded ports (`ports`), each with its pod's MAC (`macs`) and with its MAC and IPv4
//! (`addresses`). The `input` and `forward` base chains send a frame that enters through a
//! guarded port to chain `check`, which drops a source MAC, an ARP sender MAC and IP, or an
//! IPv4 source that is not the port's pod's (each drop counted). Every test is a hash lookup,
//! so a frame costs the same with 10 pods or 250. The ebtables chains of earlier versions cost
//! a rule per port for every frame: with 100 pods, 11 % of the node's CPU at 128 connections
//! (docs/benchmarks.md); NMI takes them away when it finds them.
//!
//! The table is always written whole, in one transaction ([`script`]): nothing is ever half
//! applied. It is written when a port came or went, or when the listing differs from what NMI
//! read back after its last write (someone changed it), checked every look and full resync.
//!
//! The decisions are pure ([`parse_result`], [`guarded_ports`], [`script`], [`read_listing`],
//! [`in_place`], [`legacy_removal`]); the directory, sysfs, `nft` and `ebtables` are read and
//! run at the edges ([`PortGuard`]) through the iptables module's [`Runner`].

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::iptables::{Output, Runner};

/// NMI's nftables table (no upstream name: upstream had no such guard), in the bridge family.
pub const TABLE: &str = "podid_nmi";
const FAMILY: &str = "bridge";
/// The ports guarded; each with its pod's MAC; each with its pod's MAC and IPv4.
const PORTS_SET: &str = "ports";
const MACS_SET: &str = "macs";
const ADDRESSES_SET: &str = "addresses";
/// The chain the base chains send a guarded port's frames to.
const CHECK_CHAIN: &str = "check";
/// The bridge's hooks a pod's frames pass: to the node (NMI among it) and to other pods.
const HOOKS: [&str; 2] = ["input", "forward"];
/// The ebtables chains of NMI's earlier versions, taken away when found.
const LEGACY_CHAIN: &str = "PODID-NMI-ANTISPOOF";
const LEGACY_PORT_CHAIN_PREFIX: &str = "PODID-PORT-";
/// How often the results directory is looked at; nft runs only when it changed (or at each
/// full resync).
pub const POLL: Duration = Duration::from_secs(1);

/// One sandbox of a results file, before its host interfaces are checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sandbox {
    /// Host-side interfaces named by the result (the bridge itself among them).
    pub host_interfaces: Vec<String>,
    /// The pod interface's MAC, lower case with two digits per byte (ebtables' listing).
    pub mac: String,
    pub ipv4: Ipv4Addr,
}

/// A bridge port bound to its pod's addresses.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Port {
    pub interface: String,
    pub mac: String,
    pub ipv4: Ipv4Addr,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ResultError {
    #[error("not JSON: {0}")]
    Json(String),
    #[error("no `result` object")]
    NoResult,
    #[error("{0}")]
    Shape(String),
}

#[derive(Debug, thiserror::Error)]
pub enum PortGuardError {
    #[error("running nft or ebtables: {0}")]
    Spawn(#[source] std::io::Error),
    #[error(transparent)]
    Listing(ListingError),
    #[error("`{command}` failed ({code:?}): {stderr}")]
    Failed {
        command: String,
        code: Option<i32>,
        stderr: String,
    },
}

fn shape(text: impl Into<String>) -> ResultError {
    ResultError::Shape(text.into())
}

/// A MAC address in ebtables' listing form, or `None` when `text` is not one.
fn canonical_mac(text: &str) -> Option<String> {
    let parts: Vec<&str> = text.split(':').collect();
    if parts.len() != 6 {
        return None;
    }
    let mut bytes = Vec::with_capacity(6);
    for part in parts {
        if !(1..=2).contains(&part.len()) || !part.chars().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        bytes.push(format!("{:02x}", u8::from_str_radix(part, 16).ok()?));
    }
    Some(bytes.join(":"))
}

/// An interface name safe as an ebtables argument and a sysfs path component.
fn interface_name(text: &str) -> bool {
    (1..=15).contains(&text.len())
        && text != "."
        && text != ".."
        && !text.starts_with(['-', '!', '+'])
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@' | ':'))
}

/// The sandbox a results file describes: `Ok(None)` when it has no IPv4 address on a pod
/// interface (the loopback network's result, an IPv6-only pod), an error when it is not a CNI
/// result or is ambiguous.
pub fn parse_result(text: &str) -> Result<Option<Sandbox>, ResultError> {
    let file: Value = serde_json::from_str(text).map_err(|e| ResultError::Json(e.to_string()))?;
    let result = file
        .get("result")
        .filter(|r| r.is_object())
        .ok_or(ResultError::NoResult)?;
    let interfaces = match result.get("interfaces") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(list)) => list.clone(),
        Some(_) => return Err(shape("`interfaces` is not a list")),
    };
    let sandboxed = |i: &Value| {
        i.get("sandbox")
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty())
    };
    let mut ipv4 = Vec::new();
    for ip in result
        .get("ips")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let address = ip
            .get("address")
            .and_then(Value::as_str)
            .ok_or_else(|| shape("an address without `address`"))?;
        let host = address.split('/').next().unwrap_or_default();
        if host.contains(':') {
            continue; // IPv6: NMI's redirect is IPv4 only
        }
        let parsed: Ipv4Addr = host
            .parse()
            .map_err(|_| shape(format!("address {address:?} is not an IP address")))?;
        ipv4.push((parsed, ip.get("interface").and_then(Value::as_u64)));
    }
    let pod_interface = |index: Option<u64>| -> Result<Option<&Value>, ResultError> {
        match index {
            Some(i) => {
                let found = usize::try_from(i)
                    .ok()
                    .and_then(|i| interfaces.get(i))
                    .ok_or_else(|| shape(format!("`interface` {i} is out of range")))?;
                Ok(sandboxed(found).then_some(found))
            }
            None => {
                let mut pods = interfaces.iter().filter(|i| sandboxed(i));
                match (pods.next(), pods.next()) {
                    (Some(one), None) => Ok(Some(one)),
                    _ => Err(shape(
                        "an address without `interface` and not one pod interface",
                    )),
                }
            }
        }
    };
    let mut on_pod = Vec::new();
    for (address, index) in ipv4 {
        if let Some(interface) = pod_interface(index)? {
            on_pod.push((address, interface));
        }
    }
    let (address, interface) = match on_pod.as_slice() {
        [] => return Ok(None),
        [one] => *one,
        _ => return Err(shape("more than one IPv4 address on the pod's interfaces")),
    };
    let mac = interface
        .get("mac")
        .and_then(Value::as_str)
        .and_then(canonical_mac)
        .ok_or_else(|| shape("the pod interface has no valid `mac`"))?;
    let mut host_interfaces = Vec::new();
    for i in interfaces.iter().filter(|i| !sandboxed(i)) {
        let name = i
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| shape("a host interface without `name`"))?;
        if !interface_name(name) {
            return Err(shape(format!("host interface name {name:?} is not valid")));
        }
        host_interfaces.push(name.to_owned());
    }
    Ok(Some(Sandbox {
        host_interfaces,
        mac,
        ipv4: address,
    })
    .filter(|s| !s.host_interfaces.is_empty()))
}

/// The ports to guard: for each sandbox (oldest results file first), its one host interface
/// that `is_bridge_port`; a sandbox with none is not guarded (a routed CNI, or its port is
/// gone), and a port named by two sandboxes goes to the newer one (a stale file).
pub fn guarded_ports<'a>(
    sandboxes: impl IntoIterator<Item = &'a Sandbox>,
    is_bridge_port: impl Fn(&str) -> bool,
) -> Vec<Port> {
    let mut ports = BTreeMap::new();
    for sandbox in sandboxes {
        let mut bridge_ports = sandbox.host_interfaces.iter().filter(|i| is_bridge_port(i));
        if let (Some(interface), None) = (bridge_ports.next(), bridge_ports.next()) {
            ports.insert(
                interface.clone(),
                Port {
                    interface: interface.clone(),
                    mac: sandbox.mac.clone(),
                    ipv4: sandbox.ipv4,
                },
            );
        }
    }
    ports.into_values().collect()
}

/// The set elements of NMI's table, by set name, each as the listing spells it (the parts of a
/// concatenation joined by ` . `).
pub type Elements = BTreeMap<String, BTreeSet<String>>;

/// The nft script that replaces NMI's table with one guarding exactly `ports`. `nft -f` applies
/// a script as one transaction: the table is created when missing so that it can be deleted,
/// and the new one takes its place in the same commit, so no frame meets a half-built table or
/// none at all.
pub fn script(ports: &[Port]) -> String {
    let wanted = wanted_elements(ports);
    let elements = |set: &str| -> String {
        let items = &wanted[set];
        if items.is_empty() {
            String::new()
        } else {
            let list: Vec<&str> = items.iter().map(String::as_str).collect();
            format!("\t\telements = {{ {} }}\n", list.join(", "))
        }
    };
    let base_chain = |hook: &str| {
        format!(
            "\tchain {hook} {{\n\t\ttype filter hook {hook} priority filter; policy accept;\n\t\tiifname @{PORTS_SET} jump {CHECK_CHAIN}\n\t}}\n"
        )
    };
    let mut text = removal_script();
    text += &format!("table {FAMILY} {TABLE} {{\n");
    for (set, kind) in [
        (PORTS_SET, "ifname"),
        (MACS_SET, "ifname . ether_addr"),
        (ADDRESSES_SET, "ifname . ether_addr . ipv4_addr"),
    ] {
        text += &format!("\tset {set} {{\n\t\ttype {kind}\n{}\t}}\n", elements(set));
    }
    for hook in HOOKS {
        text += &base_chain(hook);
    }
    text += &format!(
        "\tchain {CHECK_CHAIN} {{\n\
         \t\tiifname . ether saddr != @{MACS_SET} counter drop\n\
         \t\tiifname . arp saddr ether . arp saddr ip != @{ADDRESSES_SET} counter drop\n\
         \t\tiifname . ether saddr . ip saddr != @{ADDRESSES_SET} counter drop\n\
         \t}}\n}}\n"
    );
    text
}

/// The script that takes NMI's table away, whether or not it is there.
pub fn removal_script() -> String {
    format!("table {FAMILY} {TABLE}\ndelete table {FAMILY} {TABLE}\n")
}

/// What each set holds for `ports`, spelled as [`read_listing`] reads it back.
pub fn wanted_elements(ports: &[Port]) -> Elements {
    let mut elements = Elements::new();
    for set in [PORTS_SET, MACS_SET, ADDRESSES_SET] {
        elements.insert(set.to_owned(), BTreeSet::new());
    }
    for port in ports {
        let (name, mac, ip) = (&port.interface, &port.mac, port.ipv4);
        for (set, element) in [
            (PORTS_SET, format!("\"{name}\"")),
            (MACS_SET, format!("\"{name}\" . {mac}")),
            (ADDRESSES_SET, format!("\"{name}\" . {mac} . {ip}")),
        ] {
            elements.entry(set.to_owned()).or_default().insert(element);
        }
    }
    elements
}

/// NMI's table as `nft -j list table` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Installed {
    pub elements: Elements,
    /// The sets' definitions, the chains and the rules, without what changes on its own:
    /// handles, elements and counters' values.
    pub definitions: Vec<Value>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("nft's listing is not what it should be: {0}")]
pub struct ListingError(String);

/// Reads `nft -j list table bridge podid_nmi`.
pub fn read_listing(json: &str) -> Result<Installed, ListingError> {
    let listing: Value = serde_json::from_str(json).map_err(|e| ListingError(e.to_string()))?;
    let objects = listing
        .get("nftables")
        .and_then(Value::as_array)
        .ok_or_else(|| ListingError("no `nftables` list".to_owned()))?;
    let mut elements = Elements::new();
    let mut definitions = Vec::new();
    for object in objects {
        let Some((kind, body)) = object.as_object().and_then(|o| o.iter().next()) else {
            continue;
        };
        match kind.as_str() {
            "set" => {
                let name = body.get("name").and_then(Value::as_str).unwrap_or_default();
                let items = body
                    .get("elem")
                    .and_then(Value::as_array)
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                elements.insert(name.to_owned(), items.iter().map(spell_element).collect());
                let mut definition = object.clone();
                if let Some(set) = definition.get_mut("set").and_then(Value::as_object_mut) {
                    set.remove("elem");
                }
                definitions.push(definition);
            }
            "chain" | "rule" => definitions.push(object.clone()),
            _ => {}
        }
    }
    definitions.iter_mut().for_each(without_state);
    Ok(Installed {
        elements,
        definitions,
    })
}

/// An element as the script spells it: every set's first part is the interface name, quoted;
/// the addresses after it are bare; the parts of a concatenation are joined by ` . `.
fn spell_element(element: &Value) -> String {
    let text = |value: &Value| {
        value
            .as_str()
            .map_or_else(|| value.to_string(), str::to_owned)
    };
    match element.get("concat").and_then(Value::as_array) {
        Some(parts) => parts
            .iter()
            .enumerate()
            .map(|(i, part)| match i {
                0 => format!("\"{}\"", text(part)),
                _ => text(part),
            })
            .collect::<Vec<_>>()
            .join(" . "),
        None => format!("\"{}\"", text(element)),
    }
}

/// Drops handles and counters' values, which change without anyone changing the table.
fn without_state(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.remove("handle");
            if let Some(counter) = map.get_mut("counter") {
                *counter = Value::Null;
            }
            map.values_mut().for_each(without_state);
        }
        Value::Array(items) => items.iter_mut().for_each(without_state),
        _ => {}
    }
}

/// Whether the table guards exactly `ports` with the definitions NMI read back after it last
/// wrote the table (`written`: none yet since NMI started, so the table is written once).
pub fn in_place(ports: &[Port], installed: Option<&Installed>, written: Option<&[Value]>) -> bool {
    installed.is_some_and(|installed| {
        installed.elements == wanted_elements(ports)
            && written.is_some_and(|written| installed.definitions == written)
    })
}

/// The commands (arguments after `ebtables -t filter`) that take away the ebtables chains of
/// NMI's earlier versions (one chain, jumped to from `INPUT` and `FORWARD`, with the ports'
/// rules or jumps to a chain per port): each jump, then the chains, each flushed first
/// (ebtables deletes only an empty chain nothing jumps to). Empty when there are none.
pub fn legacy_removal(listing: &str) -> Vec<Vec<String>> {
    let chains = parse_ebtables_listing(listing);
    let jump = format!("-j {LEGACY_CHAIN}");
    let mut commands = Vec::new();
    for hook in ["INPUT", "FORWARD"] {
        let jumps = chains
            .get(hook)
            .map(|rules| rules.iter().filter(|r| **r == jump).count())
            .unwrap_or(0);
        for _ in 0..jumps {
            commands.push(words(&format!("-D {hook} {jump}")));
        }
    }
    let ours = chains
        .keys()
        .filter(|name| *name == LEGACY_CHAIN || name.starts_with(LEGACY_PORT_CHAIN_PREFIX));
    for name in ours {
        commands.push(words(&format!("-F {name}")));
        commands.push(words(&format!("-X {name}")));
    }
    commands
}

fn words(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_owned).collect()
}

/// `ebtables -t filter -L`: each chain's rule lines, by chain name.
fn parse_ebtables_listing(listing: &str) -> BTreeMap<String, Vec<String>> {
    let mut chains: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current = None;
    for line in listing.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("Bridge chain: ") {
            let name = rest.split(',').next().unwrap_or_default().to_owned();
            chains.entry(name.clone()).or_default();
            current = Some(name);
        } else if line.starts_with('-')
            && let Some(name) = &current
        {
            chains
                .entry(name.clone())
                .or_default()
                .push(line.to_owned());
        }
    }
    chains
}

/// What a pass over the results directory read: the sandboxes (oldest file first) and the
/// files skipped, with why.
#[derive(Debug, Default)]
pub struct Scan {
    pub sandboxes: Vec<Sandbox>,
    pub skipped: Vec<(PathBuf, String)>,
    /// Names and modification times: a change means a pod sandbox came or went.
    pub fingerprint: Vec<(String, Option<SystemTime>)>,
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The guard's edges: the results directory, sysfs, `nft` and `ebtables`.
pub struct PortGuard {
    runner: Arc<dyn Runner>,
    results_dir: PathBuf,
    sys_class_net: PathBuf,
    /// Held while the table changes.
    state: Mutex<GuardState>,
}

#[derive(Default)]
struct GuardState {
    /// Once [`PortGuard::remove`] ran nothing is installed again (NMI is stopping).
    removed: bool,
    /// The table's definitions as read back after NMI last wrote it.
    written: Option<Vec<Value>>,
    /// Whether earlier versions' ebtables chains were looked for (once per start).
    legacy_cleared: bool,
}

impl PortGuard {
    pub fn new(runner: Arc<dyn Runner>, results_dir: PathBuf) -> Self {
        Self {
            runner,
            results_dir,
            sys_class_net: PathBuf::from("/sys/class/net"),
            state: Mutex::default(),
        }
    }

    pub fn results_dir(&self) -> &Path {
        &self.results_dir
    }

    /// Whether the results directory can be listed (else the guard is off).
    pub fn usable(&self) -> std::io::Result<()> {
        std::fs::read_dir(&self.results_dir).map(|_| ())
    }

    /// The directory's entries with their modification times, oldest first (no file read).
    fn entries(&self) -> std::io::Result<Vec<(Option<SystemTime>, PathBuf)>> {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(&self.results_dir)? {
            let entry = entry?;
            let modified = entry.metadata().and_then(|m| m.modified()).ok();
            files.push((modified, entry.path()));
        }
        files.sort();
        Ok(files)
    }

    /// What [`Scan::fingerprint`] would be, without reading the files: the cheap look made
    /// every [`POLL`].
    pub fn fingerprint(&self) -> std::io::Result<Vec<(String, Option<SystemTime>)>> {
        Ok(self
            .entries()?
            .into_iter()
            .map(|(modified, path)| (file_name(&path), modified))
            .collect())
    }

    /// The directory's entries, oldest first; a file that cannot be read or parsed is skipped.
    pub fn scan(&self) -> std::io::Result<Scan> {
        let files = self.entries()?;
        let mut scan = Scan::default();
        for (modified, path) in files {
            scan.fingerprint.push((file_name(&path), modified));
            let parsed = std::fs::read_to_string(&path)
                .map_err(|e| e.to_string())
                .and_then(|text| parse_result(&text).map_err(|e| e.to_string()));
            match parsed {
                Ok(Some(sandbox)) => scan.sandboxes.push(sandbox),
                Ok(None) => {}
                Err(why) => scan.skipped.push((path, why)),
            }
        }
        Ok(scan)
    }

    fn is_bridge_port(&self, interface: &str) -> bool {
        self.sys_class_net.join(interface).join("brport").exists()
    }

    /// Brings the table to `scan`'s ports: `Some(ports guarded)` when it was written, `None`
    /// when it was in place.
    pub fn reconcile(&self, scan: &Scan) -> Result<Option<usize>, PortGuardError> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.removed {
            return Ok(None);
        }
        let ports = guarded_ports(&scan.sandboxes, |i| self.is_bridge_port(i));
        let installed = self.installed()?;
        let written = if in_place(&ports, installed.as_ref(), state.written.as_deref()) {
            None
        } else {
            // Forgotten first: a failure below leaves the table to be written again.
            state.written = None;
            self.run_checked("nft", &["-f", "-"], &script(&ports))?;
            let read_back = self.installed()?.ok_or_else(|| PortGuardError::Failed {
                command: format!("nft list table {FAMILY} {TABLE}"),
                code: None,
                stderr: "the table is missing right after it was written".to_owned(),
            })?;
            state.written = Some(read_back.definitions);
            Some(ports.len())
        };
        if !state.legacy_cleared {
            state.legacy_cleared = true;
            self.remove_legacy_chains_or_warn();
        }
        Ok(written)
    }

    /// Takes the table away (and any earlier version's ebtables chains).
    pub fn remove(&self) -> Result<(), PortGuardError> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.removed = true;
        self.remove_legacy_chains_or_warn();
        self.run_checked("nft", &["-f", "-"], &removal_script())
            .map(drop)
    }

    /// A failure here leaves the guard itself working: it is logged, not retried.
    fn remove_legacy_chains_or_warn(&self) {
        if let Err(error) = self.remove_legacy_chains() {
            tracing::warn!(%error, "port guard: could not take away an earlier version's ebtables chains");
        }
    }

    /// The table as listed, `None` when there is none.
    fn installed(&self) -> Result<Option<Installed>, PortGuardError> {
        let args = ["-j", "list", "table", FAMILY, TABLE];
        let output = self.run("nft", &args, "")?;
        if output.code != Some(0) && output.stderr.contains("No such file or directory") {
            return Ok(None);
        }
        let listing = checked("nft", &args, output)?;
        read_listing(&listing)
            .map(Some)
            .map_err(PortGuardError::Listing)
    }

    /// Earlier versions' ebtables chains, taken away. Nothing to do without ebtables.
    fn remove_legacy_chains(&self) -> Result<(), PortGuardError> {
        let list = ["-t", "filter", "-L"];
        let listing = match self.run("ebtables", &list, "") {
            Err(PortGuardError::Spawn(error)) if error.kind() == std::io::ErrorKind::NotFound => {
                return Ok(());
            }
            output => checked("ebtables", &list, output?)?,
        };
        for command in legacy_removal(&listing) {
            let args: Vec<&str> = ["-t", "filter"]
                .into_iter()
                .chain(command.iter().map(String::as_str))
                .collect();
            self.run_checked("ebtables", &args, "")?;
        }
        Ok(())
    }

    /// `program`'s output, or the error naming it when it did not exit 0.
    fn run_checked(
        &self,
        program: &str,
        args: &[&str],
        input: &str,
    ) -> Result<String, PortGuardError> {
        checked(program, args, self.run(program, args, input)?)
    }

    fn run(&self, program: &str, args: &[&str], input: &str) -> Result<Output, PortGuardError> {
        self.runner
            .run_with_input(program, &owned(args), input)
            .map_err(PortGuardError::Spawn)
    }
}

fn owned(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| (*a).to_owned()).collect()
}

/// The output of a command that exited 0, else the error naming it.
fn checked(program: &str, args: &[&str], output: Output) -> Result<String, PortGuardError> {
    if output.code == Some(0) {
        Ok(output.stdout)
    } else {
        Err(PortGuardError::Failed {
            command: format!("{program} {}", args.join(" ")),
            code: output.code,
            stderr: output.stderr.trim().to_owned(),
        })
    }
}

/// Looks at the results directory every [`POLL`] and reconciles when it changed (or a file
/// could not be parsed last time), and at least every `resync`. Failures are logged and retried
/// at the next look; never returns.
pub async fn keep_guarding(guard: Arc<PortGuard>, resync: Duration) {
    let mut last: Option<Vec<(String, Option<SystemTime>)>> = None;
    let mut last_full = tokio::time::Instant::now();
    let mut failing = false;
    let mut warned: BTreeSet<PathBuf> = BTreeSet::new();
    let mut skipped_before: BTreeSet<PathBuf> = BTreeSet::new();
    let mut ticks = tokio::time::interval(POLL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let due = last_full.elapsed() >= resync;
        if !due && last.is_some() {
            let g = guard.clone();
            if let Ok(Ok(now)) = tokio::task::spawn_blocking(move || g.fingerprint()).await
                && last.as_ref() == Some(&now)
            {
                continue;
            }
        }
        let g = guard.clone();
        let scanned = tokio::task::spawn_blocking(move || g.scan()).await;
        let scan = match scanned {
            Ok(Ok(scan)) => scan,
            Ok(Err(error)) => {
                if !failing {
                    tracing::warn!(dir = %guard.results_dir().display(), %error,
                        "port guard: cannot read the CNI results directory; retrying");
                }
                failing = true;
                last = None;
                continue;
            }
            Err(error) => {
                tracing::warn!(%error, "port guard: scan failed");
                continue;
            }
        };
        // A file skipped twice in a row is warned about once (a single skip may be a file read
        // while libcni was writing it); while any is skipped, the next look reads again.
        for (path, why) in &scan.skipped {
            if skipped_before.contains(path) && warned.insert(path.clone()) {
                tracing::warn!(file = %path.display(), reason = %why,
                    "port guard: skipping a CNI results file it cannot read");
            }
        }
        skipped_before = scan.skipped.iter().map(|(p, _)| p.clone()).collect();
        warned.retain(|p| skipped_before.contains(p));
        let fingerprint = scan.skipped.is_empty().then(|| scan.fingerprint.clone());
        let g = guard.clone();
        match tokio::task::spawn_blocking(move || g.reconcile(&scan)).await {
            Ok(Ok(written)) => {
                if let Some(ports) = written {
                    tracing::info!(table = TABLE, ports, "port guard: table written");
                }
                if failing {
                    tracing::info!(table = TABLE, "port guard: table in place again");
                }
                failing = false;
                last = fingerprint;
                last_full = tokio::time::Instant::now();
            }
            Ok(Err(error)) => {
                if !failing {
                    tracing::warn!(%error, "port guard: updating the table failed; retrying");
                }
                failing = true;
                last = None;
            }
            Err(error) => tracing::warn!(%error, "port guard: reconcile failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;

    use super::*;

    /// The bridge result containerd cached for a pause pod on the node lab (trimmed config).
    const LAB_RESULT: &str = r#"{"kind":"cniCacheV1","containerId":"e1fa","config":"e30=","ifName":"eth0","networkName":"podid-lab","cniArgs":[["K8S_POD_NAME","p1"]],"result":{"cniVersion":"0.4.0","dns":{},"interfaces":[{"mac":"7e:bd:7e:54:09:47","name":"cni0"},{"mac":"7a:b1:e2:c9:83:d3","name":"veth58c62697"},{"mac":"1e:00:20:1c:da:52","name":"eth0","sandbox":"/var/run/netns/cni-9e3e"}],"ips":[{"address":"10.244.0.2/24","gateway":"10.244.0.1","interface":2,"version":"4"}],"routes":[{"dst":"169.254.169.254/32"}]}}"#;
    const LAB_LOOPBACK: &str = r#"{"kind":"cniCacheV1","ifName":"lo","networkName":"cni-loopback","result":{"cniVersion":"0.3.1","dns":{},"interfaces":[{"mac":"00:00:00:00:00:00","name":"lo","sandbox":"/var/run/netns/cni-9e3e"}],"ips":[{"address":"127.0.0.1/8","interface":0,"version":""},{"address":"::1/128","interface":0,"version":""}]}}"#;

    fn port(interface: &str, mac: &str, ip: [u8; 4]) -> Port {
        Port {
            interface: interface.into(),
            mac: mac.into(),
            ipv4: Ipv4Addr::from(ip),
        }
    }

    fn lab_sandbox() -> Sandbox {
        Sandbox {
            host_interfaces: vec!["cni0".into(), "veth58c62697".into()],
            mac: "1e:00:20:1c:da:52".into(),
            ipv4: Ipv4Addr::new(10, 244, 0, 2),
        }
    }

    #[test]
    fn the_labs_result_names_the_port_mac_and_address() {
        assert_eq!(parse_result(LAB_RESULT), Ok(Some(lab_sandbox())));
        // The loopback network's result has no host side: nothing to guard.
        assert_eq!(parse_result(LAB_LOOPBACK), Ok(None));
        // CNI 1.0 results have no `version`; a MAC in upper case without leading zeros.
        let v1 = r#"{"result":{"cniVersion":"1.0.0","interfaces":[{"name":"vethA"},{"name":"eth0","mac":"0A:B:C:D:E:F","sandbox":"/ns"}],"ips":[{"address":"10.0.0.9/24","interface":1},{"address":"fd00::9/64","interface":1}]}}"#;
        assert_eq!(
            parse_result(v1),
            Ok(Some(Sandbox {
                host_interfaces: vec!["vethA".into()],
                mac: "0a:0b:0c:0d:0e:0f".into(),
                ipv4: Ipv4Addr::new(10, 0, 0, 9),
            }))
        );
    }

    #[test]
    fn malformed_or_ambiguous_results_are_errors_never_panics() {
        for text in [
            "",
            "not json",
            "[]",
            r#"{"kind":"cniCacheV1"}"#,
            r#"{"result":{"interfaces":{},"ips":[]}}"#,
            r#"{"result":{"interfaces":[{"name":"v","sandbox":""},{"name":"eth0","sandbox":"/n","mac":"zz"}],"ips":[{"address":"10.0.0.1/24","interface":1}]}}"#,
            r#"{"result":{"interfaces":[{"name":"v"},{"name":"eth0","sandbox":"/n","mac":"02:00:00:00:00:01"}],"ips":[{"address":"10.0.0.1/24","interface":7}]}}"#,
            r#"{"result":{"interfaces":[{"name":"v"},{"name":"eth0","sandbox":"/n","mac":"02:00:00:00:00:01"}],"ips":[{"address":"10.0.0.1/24","interface":1},{"address":"10.0.0.2/24","interface":1}]}}"#,
            r#"{"result":{"interfaces":[{"name":"-j ACCEPT"},{"name":"eth0","sandbox":"/n","mac":"02:00:00:00:00:01"}],"ips":[{"address":"10.0.0.1/24","interface":1}]}}"#,
            r#"{"result":{"interfaces":[{"name":"../x"},{"name":"eth0","sandbox":"/n","mac":"02:00:00:00:00:01"}],"ips":[{"address":"10.0.0.1/24","interface":1}]}}"#,
            r#"{"result":{"interfaces":[{"name":"v"},{"name":"eth0","sandbox":"/n","mac":"02:00:00:00:00:01"}],"ips":[{"address":"ten/24","interface":1}]}}"#,
            r#"{"result":{"interfaces":[{"name":"v"},{"name":"eth0","sandbox":"/n","mac":"02:00:00:00:00:01:02"}],"ips":[{"address":"10.0.0.1/24","interface":1}]}}"#,
        ] {
            assert!(parse_result(text).is_err(), "{text}");
        }
    }

    #[test]
    fn only_a_single_bridge_port_is_guarded_and_the_newer_file_wins() {
        let bridge_ports = |i: &str| i.starts_with("veth");
        assert_eq!(
            guarded_ports(&[lab_sandbox()], bridge_ports),
            [port("veth58c62697", "1e:00:20:1c:da:52", [10, 244, 0, 2])]
        );
        // Routed (no bridge port): not covered.
        assert!(guarded_ports(&[lab_sandbox()], |_| false).is_empty());
        let newer = Sandbox {
            mac: "02:00:00:00:00:09".into(),
            ipv4: Ipv4Addr::new(10, 244, 0, 9),
            ..lab_sandbox()
        };
        assert_eq!(
            guarded_ports(&[lab_sandbox(), newer], bridge_ports),
            [port("veth58c62697", "02:00:00:00:00:09", [10, 244, 0, 9])]
        );
    }

    fn lab_port() -> Port {
        port("veth58c62697", "1e:00:20:1c:da:52", [10, 244, 0, 2])
    }

    /// `nft -j list table bridge podid_nmi` (nft 1.0.6, Debian 12) after `nft -f` ran
    /// [`LAB_SCRIPT`], in a scratch network namespace.
    const LAB_LISTING: &str = include_str!("testdata/nft-lab-listing.json");

    /// The table guarding the lab's port.
    const LAB_SCRIPT: &str = "table bridge podid_nmi
delete table bridge podid_nmi
table bridge podid_nmi {
	set ports {
		type ifname
		elements = { \"veth58c62697\" }
	}
	set macs {
		type ifname . ether_addr
		elements = { \"veth58c62697\" . 1e:00:20:1c:da:52 }
	}
	set addresses {
		type ifname . ether_addr . ipv4_addr
		elements = { \"veth58c62697\" . 1e:00:20:1c:da:52 . 10.244.0.2 }
	}
	chain input {
		type filter hook input priority filter; policy accept;
		iifname @ports jump check
	}
	chain forward {
		type filter hook forward priority filter; policy accept;
		iifname @ports jump check
	}
	chain check {
		iifname . ether saddr != @macs counter drop
		iifname . arp saddr ether . arp saddr ip != @addresses counter drop
		iifname . ether saddr . ip saddr != @addresses counter drop
	}
}
";

    #[test]
    fn the_script_writes_the_whole_table_in_one_transaction() {
        assert_eq!(script(&[lab_port()]), LAB_SCRIPT);
        // No ports: the sets are declared without elements (`elements = { }` is not nft).
        let empty = script(&[]);
        assert!(!empty.contains("elements"), "{empty}");
        assert_eq!(empty.matches("\tset ").count(), 3);
        assert_eq!(
            removal_script(),
            "table bridge podid_nmi\ndelete table bridge podid_nmi\n"
        );
    }

    #[test]
    fn the_listing_reads_back_as_the_script_spells_the_elements() {
        let installed = read_listing(LAB_LISTING).unwrap();
        assert_eq!(installed.elements, wanted_elements(&[lab_port()]));
        // Three sets, three chains, a rule in each base chain and three in `check`.
        assert_eq!(installed.definitions.len(), 3 + 3 + 5);
        let text = serde_json::to_string(&installed.definitions).unwrap();
        assert!(
            !text.contains("handle") && !text.contains("packets"),
            "{text}"
        );
        assert!(
            !text.contains("veth58c62697"),
            "elements are read apart: {text}"
        );
    }

    #[test]
    fn listings_that_are_not_nfts_are_errors_never_panics() {
        for bad in ["", "[]", "{}", "{\"nftables\": 3}", "not json"] {
            assert!(read_listing(bad).is_err(), "{bad:?}");
        }
        // Unknown objects are passed over; odd elements are spelled, not trusted.
        let odd = r#"{"nftables":[{"metainfo":{}},{"set":{"name":"ports","elem":[7,{"concat":[1,"x"]}]}},{"map":{}}]}"#;
        let installed = read_listing(odd).unwrap();
        assert_eq!(
            installed.elements["ports"],
            BTreeSet::from(["\"1\" . x".to_owned(), "\"7\"".to_owned()])
        );
    }

    /// The lab's listing with `edit` applied to its JSON.
    fn edited(edit: impl FnOnce(&mut Vec<Value>)) -> Installed {
        let mut listing: Value = serde_json::from_str(LAB_LISTING).unwrap();
        edit(listing["nftables"].as_array_mut().unwrap());
        read_listing(&listing.to_string()).unwrap()
    }

    #[test]
    fn the_table_is_in_place_only_as_nmi_wrote_it_with_exactly_the_ports() {
        let ports = [lab_port()];
        let installed = read_listing(LAB_LISTING).unwrap();
        let written = installed.definitions.clone();
        assert!(in_place(&ports, Some(&installed), Some(&written)));
        // No table, or none written since NMI started: written (once, atomically).
        assert!(!in_place(&ports, None, Some(&written)));
        assert!(!in_place(&ports, Some(&installed), None));
        // A port gone, a new one, a pod's address or MAC changed behind the same port.
        assert!(!in_place(&[], Some(&installed), Some(&written)));
        let other = port("veth0000", "0a:00:00:00:00:01", [10, 244, 0, 9]);
        assert!(!in_place(
            &[lab_port(), other],
            Some(&installed),
            Some(&written)
        ));
        let moved = port("veth58c62697", "1e:00:20:1c:da:52", [10, 244, 0, 3]);
        assert!(!in_place(&[moved], Some(&installed), Some(&written)));
        // Counters move as frames are dropped: still in place.
        let counted = edited(|objects| {
            for object in objects.iter_mut() {
                if let Some(counter) = object.pointer_mut("/rule/expr/1/counter") {
                    *counter = serde_json::json!({"packets": 3, "bytes": 180});
                }
            }
        });
        assert!(in_place(&ports, Some(&counted), Some(&written)));
        // A rule taken out, or a drop turned into an accept: written again.
        let without_rule = edited(|objects| {
            let last = objects
                .iter()
                .rposition(|o| o.get("rule").is_some())
                .unwrap();
            objects.remove(last);
        });
        assert!(!in_place(&ports, Some(&without_rule), Some(&written)));
        let accepting = edited(|objects| {
            let rule = objects
                .iter_mut()
                .rfind(|o| o.get("rule").is_some())
                .unwrap();
            let expr = rule
                .pointer_mut("/rule/expr")
                .unwrap()
                .as_array_mut()
                .unwrap();
            *expr.last_mut().unwrap() = serde_json::json!({"accept": null});
        });
        assert!(!in_place(&ports, Some(&accepting), Some(&written)));
        // An element added behind NMI's back.
        let extra = edited(|objects| {
            let ports = objects
                .iter_mut()
                .find(|o| o.pointer("/set/name") == Some(&Value::from("ports")))
                .unwrap();
            ports
                .pointer_mut("/set/elem")
                .unwrap()
                .as_array_mut()
                .unwrap()
                .push("veth1".into());
        });
        assert!(!in_place(&ports, Some(&extra), Some(&written)));
    }

    /// `ebtables -t filter -L` (ebtables 1.8.9, nf_tables) with an earlier NMI's jumps and
    /// `chains` after the built-in chains.
    fn legacy_listing(chains: &str) -> String {
        format!(
            "Bridge table: filter\n\nBridge chain: INPUT, entries: 1, policy: ACCEPT\n-j {LEGACY_CHAIN}\n\nBridge chain: FORWARD, entries: 1, policy: ACCEPT\n-j {LEGACY_CHAIN}\n\nBridge chain: OUTPUT, entries: 0, policy: ACCEPT\n\n{chains}"
        )
    }

    /// A port as the second ebtables version guarded it: a chain per port.
    const PER_PORT: &str = "Bridge chain: PODID-NMI-ANTISPOOF, entries: 1, policy: RETURN\n-i veth58c62697 -j PODID-PORT-veth58c62697\n\nBridge chain: PODID-PORT-veth58c62697, entries: 4, policy: RETURN\n-s ! 1e:00:20:1c:da:52 -j DROP\n-p ARP --arp-mac-src ! 1e:00:20:1c:da:52 -j DROP\n-p ARP --arp-ip-src ! 10.244.0.2 -j DROP\n-p IPv4 --ip-src ! 10.244.0.2 -j DROP\n";

    /// And as the first: four rules per port in NMI's chain.
    const FLAT: &str = "Bridge chain: PODID-NMI-ANTISPOOF, entries: 4, policy: RETURN\n-s ! 1e:00:20:1c:da:52 -i veth58c62697 -j DROP\n-p ARP -i veth58c62697 --arp-mac-src ! 1e:00:20:1c:da:52 -j DROP\n-p ARP -i veth58c62697 --arp-ip-src ! 10.244.0.2 -j DROP\n-p IPv4 -i veth58c62697 --ip-src ! 10.244.0.2 -j DROP\n";

    fn lines(commands: &[Vec<String>]) -> Vec<String> {
        commands.iter().map(|c| c.join(" ")).collect()
    }

    #[test]
    fn earlier_versions_chains_lose_their_jumps_then_go() {
        let jumps = [
            "-D INPUT -j PODID-NMI-ANTISPOOF",
            "-D FORWARD -j PODID-NMI-ANTISPOOF",
        ];
        let main = ["-F PODID-NMI-ANTISPOOF", "-X PODID-NMI-ANTISPOOF"];
        let port = ["-F PODID-PORT-veth58c62697", "-X PODID-PORT-veth58c62697"];
        assert_eq!(
            lines(&legacy_removal(&legacy_listing(PER_PORT))),
            [&jumps[..], &main, &port].concat()
        );
        assert_eq!(
            lines(&legacy_removal(&legacy_listing(FLAT))),
            [&jumps[..], &main].concat()
        );
        // Other chains (a CNI's, an operator's) are left alone.
        let others = "Bridge table: filter\n\nBridge chain: INPUT, entries: 1, policy: ACCEPT\n-j CNI-X\n\nBridge chain: CNI-X, entries: 0, policy: RETURN\n";
        assert!(legacy_removal(others).is_empty());
    }

    /// Answers `nft` and `ebtables` as a node would: the table as written, or none.
    struct Node {
        /// `ebtables -t filter -L`; `None`: no ebtables program.
        legacy: Mutex<Option<String>>,
        table: Mutex<Option<String>>,
        commands: Mutex<Vec<String>>,
    }

    impl Node {
        fn new(legacy: Option<String>) -> Arc<Self> {
            Arc::new(Self {
                legacy: Mutex::new(legacy),
                table: Mutex::default(),
                commands: Mutex::default(),
            })
        }

        fn commands(&self) -> Vec<String> {
            std::mem::take(&mut *self.commands.lock().unwrap())
        }
    }

    impl Runner for Node {
        fn run_with_input(
            &self,
            program: &str,
            args: &[String],
            input: &str,
        ) -> std::io::Result<Output> {
            let line = format!("{program} {}", args.join(" "));
            self.commands.lock().unwrap().push(line.clone());
            let ok = |stdout: String| Output {
                code: Some(0),
                stdout,
                stderr: String::new(),
            };
            Ok(match line.as_str() {
                "nft -j list table bridge podid_nmi" => match &*self.table.lock().unwrap() {
                    Some(listing) => ok(listing.clone()),
                    None => Output {
                        code: Some(1),
                        stdout: String::new(),
                        stderr: "Error: No such file or directory\n".into(),
                    },
                },
                "nft -f -" => {
                    // Any table written lists as the lab's (the real listing of the lab's port).
                    assert!(input.starts_with(&removal_script()), "{input}");
                    *self.table.lock().unwrap() =
                        (input != removal_script()).then(|| LAB_LISTING.to_owned());
                    ok(String::new())
                }
                _ if program == "ebtables" && self.legacy.lock().unwrap().is_none() => {
                    return Err(std::io::ErrorKind::NotFound.into());
                }
                "ebtables -t filter -L" => {
                    ok(self.legacy.lock().unwrap().clone().unwrap_or_default())
                }
                _ if program == "ebtables" => {
                    // Taken away: the listing has none of NMI's chains left.
                    *self.legacy.lock().unwrap() =
                        Some(legacy_listing("").replace("-j PODID-NMI-ANTISPOOF\n", ""));
                    ok(String::new())
                }
                _ => panic!("unexpected {line}"),
            })
        }
    }

    #[test]
    fn the_guard_reads_the_directory_and_skips_what_it_cannot_parse() {
        let dir = tempfile::tempdir().unwrap();
        let sys = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("podid-lab-e1fa-eth0"), LAB_RESULT).unwrap();
        std::fs::write(dir.path().join("cni-loopback-e1fa-lo"), LAB_LOOPBACK).unwrap();
        std::fs::write(dir.path().join("podid-lab-bad-eth0"), "{\"result\": ").unwrap();
        std::fs::create_dir_all(sys.path().join("veth58c62697/brport")).unwrap();
        std::fs::create_dir_all(sys.path().join("cni0/bridge")).unwrap();
        let node = Node::new(Some(legacy_listing(PER_PORT)));
        let guard = PortGuard {
            runner: node.clone(),
            results_dir: dir.path().to_owned(),
            sys_class_net: sys.path().to_owned(),
            state: Mutex::default(),
        };
        let scan = guard.scan().unwrap();
        assert_eq!(scan.sandboxes, [lab_sandbox()]);
        assert_eq!(scan.skipped.len(), 1);
        assert!(scan.skipped[0].0.ends_with("podid-lab-bad-eth0"));
        assert_eq!(scan.fingerprint.len(), 3);
        assert_eq!(guard.fingerprint().unwrap(), scan.fingerprint);
        // No table: written, read back; then the earlier version's chains go.
        assert_eq!(guard.reconcile(&scan).unwrap(), Some(1));
        let list = "nft -j list table bridge podid_nmi";
        let legacy: Vec<String> = legacy_removal(&legacy_listing(PER_PORT))
            .iter()
            .map(|c| format!("ebtables -t filter {}", c.join(" ")))
            .collect();
        let first = [list, "nft -f -", list, "ebtables -t filter -L"].map(str::to_owned);
        assert_eq!(node.commands(), [&first[..], &legacy].concat());
        // In place: one look, nothing written, ebtables not asked again.
        assert_eq!(guard.reconcile(&scan).unwrap(), None);
        assert_eq!(node.commands(), [list]);
        // Taken away behind NMI's back (a flushed ruleset): written again.
        *node.table.lock().unwrap() = None;
        assert_eq!(guard.reconcile(&scan).unwrap(), Some(1));
        assert_eq!(node.commands(), [list, "nft -f -", list]);
        guard.remove().unwrap();
        assert_eq!(node.commands(), ["ebtables -t filter -L", "nft -f -"]);
        assert!(node.table.lock().unwrap().is_none());
        // Once removed (NMI stopping), nothing is installed again.
        assert_eq!(guard.reconcile(&scan).unwrap(), None);
        assert!(node.commands().is_empty());
        let missing = PortGuard::new(node, dir.path().join("absent"));
        assert!(missing.usable().is_err());
    }

    #[test]
    fn without_ebtables_there_are_no_earlier_chains_to_take_away() {
        let dir = tempfile::tempdir().unwrap();
        let node = Node::new(None);
        let guard = PortGuard::new(node.clone(), dir.path().to_owned());
        assert_eq!(guard.reconcile(&Scan::default()).unwrap(), Some(0));
        let list = "nft -j list table bridge podid_nmi";
        assert_eq!(
            node.commands(),
            [list, "nft -f -", list, "ebtables -t filter -L"]
        );
        guard.remove().unwrap();
        assert_eq!(node.commands(), ["ebtables -t filter -L", "nft -f -"]);
    }
}
