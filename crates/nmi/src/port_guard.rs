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
//! What is installed, in ebtables' `filter` table (nf_tables): chain [`CHAIN`], jumped to first
//! from `INPUT` and `FORWARD`, with one rule per port that sends what enters through the port to
//! the port's own chain (`PODID-PORT-<interface>`), whose four rules drop a source MAC, ARP
//! sender MAC, ARP sender IP or IPv4 source other than the pod's. A frame is matched against
//! one rule per port plus its port's four, not four per port: ebtables walks rules one by one,
//! and with 100 pods the flat layout (400 rules) cost 17 µs of CPU per token request on each
//! side of the connection (docs/benchmarks.md).
//!
//! The decisions are pure ([`parse_result`], [`guarded_ports`], [`plan`], [`removal`]); the
//! directory, sysfs and `ebtables` are read and run at the edges ([`PortGuard`]) through the
//! iptables module's [`Runner`].

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::iptables::{Output, Runner};

/// NMI's ebtables chain (no upstream name: upstream had no such guard).
pub const CHAIN: &str = "PODID-NMI-ANTISPOOF";
/// The start of each port's chain's name; the interface name follows (at most 26 characters in
/// all, within ebtables' 31).
pub const PORT_CHAIN_PREFIX: &str = "PODID-PORT-";
const TABLE: &str = "filter";
const HOOKS: [&str; 2] = ["INPUT", "FORWARD"];
/// How often the results directory is looked at; ebtables runs only when it changed (or at
/// each full resync).
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
    #[error("running ebtables: {0}")]
    Spawn(#[source] std::io::Error),
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

impl Port {
    /// The port's own chain.
    fn chain(&self) -> String {
        format!("{PORT_CHAIN_PREFIX}{}", self.interface)
    }

    /// The rule of [`CHAIN`] that sends the port's frames to its chain.
    fn jump(&self) -> String {
        format!("-i {} -j {}", self.interface, self.chain())
    }

    /// The rules of the port's chain, as `ebtables -A` takes them and `ebtables -L` lists them.
    fn rules(&self) -> [String; 4] {
        let (mac, ip) = (&self.mac, self.ipv4);
        [
            format!("-s ! {mac} -j DROP"),
            format!("-p ARP --arp-mac-src ! {mac} -j DROP"),
            format!("-p ARP --arp-ip-src ! {ip} -j DROP"),
            format!("-p IPv4 --ip-src ! {ip} -j DROP"),
        ]
    }
}

fn words(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_owned).collect()
}

/// `ebtables -t filter -L`: each chain's rule lines, by chain name.
pub fn parse_listing(listing: &str) -> BTreeMap<String, Vec<String>> {
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

fn jump() -> String {
    format!("-j {CHAIN}")
}

/// The commands (arguments after `ebtables -t filter`) that make the table guard exactly
/// `ports`: the chain and its jumps when missing; for each port, its chain and missing rules,
/// its stale rules removed, then the jump to it; last, whatever of NMI's chains no port wants
/// (jumps first, then chains). New rules go in before stale ones go out, so a port that changed
/// is never left open. Empty when everything is in place.
pub fn plan(ports: &[Port], listing: &str) -> Vec<Vec<String>> {
    let chains = parse_listing(listing);
    let mut commands = Vec::new();
    let mut command = |text: String| commands.push(words(&text));
    let main = chains.get(CHAIN);
    if main.is_none() {
        command(format!("-N {CHAIN} -P RETURN"));
    }
    for hook in HOOKS {
        let jumped = chains
            .get(hook)
            .is_some_and(|rules| rules.iter().any(|r| *r == jump()));
        if !jumped {
            command(format!("-I {hook} 1 -j {CHAIN}"));
        }
    }
    let mut wanted_jumps = BTreeSet::new();
    let mut wanted_chains = BTreeSet::new();
    for port in ports {
        let chain = port.chain();
        let present = chains.get(&chain);
        if present.is_none() {
            command(format!("-N {chain} -P RETURN"));
        }
        let rules = port.rules();
        for rule in &rules {
            if !present.is_some_and(|lines| lines.contains(rule)) {
                command(format!("-A {chain} {rule}"));
            }
        }
        for line in present.into_iter().flatten() {
            if !rules.contains(line) {
                command(format!("-D {chain} {line}"));
            }
        }
        let jump = port.jump();
        if !main.is_some_and(|lines| lines.contains(&jump)) {
            command(format!("-A {CHAIN} {jump}"));
        }
        wanted_jumps.insert(jump);
        wanted_chains.insert(chain);
    }
    for line in main.into_iter().flatten() {
        if !wanted_jumps.contains(line) {
            command(format!("-D {CHAIN} {line}"));
        }
    }
    for name in chains.keys() {
        if name.starts_with(PORT_CHAIN_PREFIX) && !wanted_chains.contains(name) {
            command(format!("-F {name}"));
            command(format!("-X {name}"));
        }
    }
    commands
}

/// The commands that take the guard off: each jump, then NMI's chain, then the ports' chains
/// (flushed first: ebtables deletes only an empty chain nothing jumps to).
pub fn removal(listing: &str) -> Vec<Vec<String>> {
    let chains = parse_listing(listing);
    let mut commands = Vec::new();
    for hook in HOOKS {
        let jumps = chains
            .get(hook)
            .map(|rules| rules.iter().filter(|r| **r == jump()).count())
            .unwrap_or(0);
        for _ in 0..jumps {
            commands.push(words(&format!("-D {hook} -j {CHAIN}")));
        }
    }
    let ours = chains
        .keys()
        .filter(|name| name.starts_with(PORT_CHAIN_PREFIX));
    for name in chains
        .get_key_value(CHAIN)
        .map(|(name, _)| name)
        .into_iter()
        .chain(ours)
    {
        commands.push(words(&format!("-F {name}")));
        commands.push(words(&format!("-X {name}")));
    }
    commands
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

/// The guard's edges: the results directory, sysfs and `ebtables`.
pub struct PortGuard {
    runner: Arc<dyn Runner>,
    results_dir: PathBuf,
    sys_class_net: PathBuf,
    /// Held while rules change; `true` once [`PortGuard::remove`] ran, after which nothing is
    /// installed again (NMI is stopping).
    removed: Mutex<bool>,
}

impl PortGuard {
    pub fn new(runner: Arc<dyn Runner>, results_dir: PathBuf) -> Self {
        Self {
            runner,
            results_dir,
            sys_class_net: PathBuf::from("/sys/class/net"),
            removed: Mutex::new(false),
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

    /// Brings the rules to `scan`'s ports; the number of commands run.
    pub fn reconcile(&self, scan: &Scan) -> Result<usize, PortGuardError> {
        let removed = self.removed.lock().unwrap_or_else(|p| p.into_inner());
        if *removed {
            return Ok(0);
        }
        let ports = guarded_ports(&scan.sandboxes, |i| self.is_bridge_port(i));
        let listing = self.ebtables(&["-L".to_owned()])?;
        let commands = plan(&ports, &listing);
        for command in &commands {
            self.ebtables(command)?;
        }
        Ok(commands.len())
    }

    /// Takes the chain and its jumps away.
    pub fn remove(&self) -> Result<(), PortGuardError> {
        let mut removed = self.removed.lock().unwrap_or_else(|p| p.into_inner());
        *removed = true;
        let listing = self.ebtables(&["-L".to_owned()])?;
        for command in removal(&listing) {
            self.ebtables(&command)?;
        }
        Ok(())
    }

    fn ebtables(&self, args: &[String]) -> Result<String, PortGuardError> {
        let args: Vec<String> = ["-t", TABLE]
            .into_iter()
            .map(str::to_owned)
            .chain(args.iter().cloned())
            .collect();
        let output: Output = self
            .runner
            .run("ebtables", &args)
            .map_err(PortGuardError::Spawn)?;
        if output.code == Some(0) {
            Ok(output.stdout)
        } else {
            Err(PortGuardError::Failed {
                command: format!("ebtables {}", args.join(" ")),
                code: output.code,
                stderr: output.stderr.trim().to_owned(),
            })
        }
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
            Ok(Ok(changed)) => {
                if changed > 0 {
                    tracing::info!(
                        chain = CHAIN,
                        commands = changed,
                        "port guard: rules updated"
                    );
                }
                if failing {
                    tracing::info!(chain = CHAIN, "port guard: rules in place again");
                }
                failing = false;
                last = fingerprint;
                last_full = tokio::time::Instant::now();
            }
            Ok(Err(error)) => {
                if !failing {
                    tracing::warn!(%error, "port guard: ebtables failed; retrying");
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

    /// `ebtables -t filter -L` on the node lab (ebtables 1.8.9, nf_tables) with NMI's jumps in
    /// place and `chains` after the built-in chains.
    fn lab_listing(chains: &str) -> String {
        format!(
            "Bridge table: filter\n\nBridge chain: INPUT, entries: 1, policy: ACCEPT\n-j {CHAIN}\n\nBridge chain: FORWARD, entries: 1, policy: ACCEPT\n-j {CHAIN}\n\nBridge chain: OUTPUT, entries: 0, policy: ACCEPT\n\n{chains}"
        )
    }

    /// A pod's port guarded.
    const GUARDED: &str = "Bridge chain: PODID-NMI-ANTISPOOF, entries: 1, policy: RETURN\n-i veth58c62697 -j PODID-PORT-veth58c62697\n\nBridge chain: PODID-PORT-veth58c62697, entries: 4, policy: RETURN\n-s ! 1e:00:20:1c:da:52 -j DROP\n-p ARP --arp-mac-src ! 1e:00:20:1c:da:52 -j DROP\n-p ARP --arp-ip-src ! 10.244.0.2 -j DROP\n-p IPv4 --ip-src ! 10.244.0.2 -j DROP\n";

    /// The same port as the first version guarded it: four rules per port in NMI's chain.
    const FLAT: &str = "Bridge chain: PODID-NMI-ANTISPOOF, entries: 4, policy: RETURN\n-s ! 1e:00:20:1c:da:52 -i veth58c62697 -j DROP\n-p ARP -i veth58c62697 --arp-mac-src ! 1e:00:20:1c:da:52 -j DROP\n-p ARP -i veth58c62697 --arp-ip-src ! 10.244.0.2 -j DROP\n-p IPv4 -i veth58c62697 --ip-src ! 10.244.0.2 -j DROP\n";

    fn lab_port() -> Port {
        port("veth58c62697", "1e:00:20:1c:da:52", [10, 244, 0, 2])
    }

    fn lines(commands: &[Vec<String>]) -> Vec<String> {
        commands.iter().map(|c| c.join(" ")).collect()
    }

    const PORT_RULES: [&str; 4] = [
        "-A PODID-PORT-veth58c62697 -s ! 1e:00:20:1c:da:52 -j DROP",
        "-A PODID-PORT-veth58c62697 -p ARP --arp-mac-src ! 1e:00:20:1c:da:52 -j DROP",
        "-A PODID-PORT-veth58c62697 -p ARP --arp-ip-src ! 10.244.0.2 -j DROP",
        "-A PODID-PORT-veth58c62697 -p IPv4 --ip-src ! 10.244.0.2 -j DROP",
    ];

    #[test]
    fn a_fresh_table_gets_the_chains_the_jumps_and_the_ports_rules() {
        let empty = "Bridge table: filter\n\nBridge chain: INPUT, entries: 0, policy: ACCEPT\n\nBridge chain: FORWARD, entries: 0, policy: ACCEPT\n\nBridge chain: OUTPUT, entries: 0, policy: ACCEPT\n";
        let mut expected = vec![
            "-N PODID-NMI-ANTISPOOF -P RETURN",
            "-I INPUT 1 -j PODID-NMI-ANTISPOOF",
            "-I FORWARD 1 -j PODID-NMI-ANTISPOOF",
            "-N PODID-PORT-veth58c62697 -P RETURN",
        ];
        expected.extend(PORT_RULES);
        expected.push("-A PODID-NMI-ANTISPOOF -i veth58c62697 -j PODID-PORT-veth58c62697");
        assert_eq!(lines(&plan(&[lab_port()], empty)), expected);
    }

    #[test]
    fn rules_in_place_are_left_alone() {
        assert!(plan(&[lab_port()], &lab_listing(GUARDED)).is_empty());
    }

    #[test]
    fn a_gone_port_loses_its_jump_then_its_chain_and_a_changed_one_is_never_open() {
        assert_eq!(
            lines(&plan(&[], &lab_listing(GUARDED))),
            [
                "-D PODID-NMI-ANTISPOOF -i veth58c62697 -j PODID-PORT-veth58c62697",
                "-F PODID-PORT-veth58c62697",
                "-X PODID-PORT-veth58c62697",
            ]
        );
        // One rule deleted by hand and a foreign rule added: the rule is appended, then the
        // foreign one goes.
        let tampered = GUARDED.replace("-p ARP --arp-ip-src ! 10.244.0.2 -j DROP\n", "-j ACCEPT\n");
        assert_eq!(
            lines(&plan(&[lab_port()], &lab_listing(&tampered))),
            [PORT_RULES[2], "-D PODID-PORT-veth58c62697 -j ACCEPT"]
        );
        // The port now has another pod's address: the new rules go in before the old go out.
        let moved = port("veth58c62697", "1e:00:20:1c:da:52", [10, 244, 0, 3]);
        assert_eq!(
            lines(&plan(&[moved], &lab_listing(GUARDED))),
            [
                "-A PODID-PORT-veth58c62697 -p ARP --arp-ip-src ! 10.244.0.3 -j DROP",
                "-A PODID-PORT-veth58c62697 -p IPv4 --ip-src ! 10.244.0.3 -j DROP",
                "-D PODID-PORT-veth58c62697 -p ARP --arp-ip-src ! 10.244.0.2 -j DROP",
                "-D PODID-PORT-veth58c62697 -p IPv4 --ip-src ! 10.244.0.2 -j DROP",
            ]
        );
    }

    #[test]
    fn the_first_versions_flat_rules_are_replaced_once_the_port_chain_is_in_place() {
        let mut expected = vec!["-N PODID-PORT-veth58c62697 -P RETURN"];
        expected.extend(PORT_RULES);
        expected.push("-A PODID-NMI-ANTISPOOF -i veth58c62697 -j PODID-PORT-veth58c62697");
        let old: Vec<String> = FLAT
            .lines()
            .skip(1)
            .map(|l| format!("-D PODID-NMI-ANTISPOOF {l}"))
            .collect();
        expected.extend(old.iter().map(String::as_str));
        assert_eq!(lines(&plan(&[lab_port()], &lab_listing(FLAT))), expected);
    }

    #[test]
    fn a_missing_jump_is_put_back_first_in_its_hook() {
        let listing = lab_listing(GUARDED).replacen(&format!("-j {CHAIN}\n"), "", 1);
        assert_eq!(
            lines(&plan(&[lab_port()], &listing)),
            ["-I INPUT 1 -j PODID-NMI-ANTISPOOF"]
        );
    }

    #[test]
    fn removal_takes_the_jumps_then_the_chains() {
        assert_eq!(
            lines(&removal(&lab_listing(GUARDED))),
            [
                "-D INPUT -j PODID-NMI-ANTISPOOF",
                "-D FORWARD -j PODID-NMI-ANTISPOOF",
                "-F PODID-NMI-ANTISPOOF",
                "-X PODID-NMI-ANTISPOOF",
                "-F PODID-PORT-veth58c62697",
                "-X PODID-PORT-veth58c62697",
            ]
        );
        assert!(
            removal("Bridge table: filter\n\nBridge chain: INPUT, entries: 0, policy: ACCEPT\n")
                .is_empty()
        );
    }

    /// Records commands; `ebtables -t filter -L` answers `listing`.
    struct Recording {
        listing: String,
        commands: Mutex<Vec<String>>,
    }

    impl Runner for Recording {
        fn run(&self, program: &str, args: &[String]) -> std::io::Result<Output> {
            let line = format!("{program} {}", args.join(" "));
            self.commands.lock().unwrap().push(line.clone());
            let stdout = if line == "ebtables -t filter -L" {
                self.listing.clone()
            } else {
                String::new()
            };
            Ok(Output {
                code: Some(0),
                stdout,
                stderr: String::new(),
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
        let runner = Arc::new(Recording {
            listing: lab_listing("Bridge chain: PODID-NMI-ANTISPOOF, entries: 0, policy: RETURN\n"),
            commands: Mutex::default(),
        });
        let guard = PortGuard {
            runner: runner.clone(),
            results_dir: dir.path().to_owned(),
            sys_class_net: sys.path().to_owned(),
            removed: Mutex::new(false),
        };
        let scan = guard.scan().unwrap();
        assert_eq!(scan.sandboxes, [lab_sandbox()]);
        assert_eq!(scan.skipped.len(), 1);
        assert!(scan.skipped[0].0.ends_with("podid-lab-bad-eth0"));
        assert_eq!(scan.fingerprint.len(), 3);
        assert_eq!(guard.fingerprint().unwrap(), scan.fingerprint);
        // The port's chain, its four rules and the jump to it.
        assert_eq!(guard.reconcile(&scan).unwrap(), 6);
        let commands = runner.commands.lock().unwrap().clone();
        assert_eq!(commands[0], "ebtables -t filter -L");
        assert_eq!(commands.len(), 7);
        guard.remove().unwrap();
        assert!(
            runner
                .commands
                .lock()
                .unwrap()
                .ends_with(&["ebtables -t filter -X PODID-NMI-ANTISPOOF".to_owned()])
        );
        // Once removed (NMI stopping), nothing is installed again.
        let before = runner.commands.lock().unwrap().len();
        assert_eq!(guard.reconcile(&scan).unwrap(), 0);
        assert_eq!(runner.commands.lock().unwrap().len(), before);
        let missing = PortGuard::new(runner, dir.path().join("absent"));
        assert!(missing.usable().is_err());
    }
}
