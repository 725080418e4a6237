//! The emulator owns 169.254.169.254 inside a fresh network namespace and a client there gets a
//! token from it. The namespace is made for the test (`ip netns add`, only `lo`, brought up,
//! 169.254.169.254/32 on it), checked to have no route out before anything is sent, and always
//! deleted, also when the test fails. Everything runs inside it: the emulator binary and curl,
//! both through `ip netns exec`.
//!
//! Needs root, iproute2 and curl (`.ci/run` installs them); without them the test fails and says
//! what is missing: a test that cannot run has not passed.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use podid_emulator::server::netns::{parse_ipv4_routes, parse_ipv6_routes, route_out};
use serde_json::Value;

const EMULATOR: &str = env!("CARGO_BIN_EXE_azure-emulator");
const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";

/// A network namespace that exists for the life of this value, with at most one process in it
/// that is killed first.
struct Namespace {
    name: String,
    process: Option<Child>,
}

impl Namespace {
    fn create() -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!("podid-test-{}-{nanos}", std::process::id());
        run(Command::new("ip").args(["netns", "add", &name]));
        // From here on, Drop deletes it.
        let ns = Self {
            name,
            process: None,
        };
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        ns.exec(&["ip", "addr", "add", "169.254.169.254/32", "dev", "lo"]);
        ns
    }

    fn command(&self, argv: &[&str]) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).args(argv);
        command
    }

    /// Runs a command inside the namespace; it must succeed.
    fn exec(&self, argv: &[&str]) -> String {
        let output = run(&mut self.command(argv));
        String::from_utf8(output.stdout).expect("UTF-8 output")
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.kill();
            let _ = process.wait();
        }
        let deleted = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
        if !deleted.is_ok_and(|s| s.success()) {
            eprintln!("could not delete network namespace {}", self.name);
        }
    }
}

fn run(command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?} did not run: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Root, `ip` and `curl`: what the test needs from the machine.
fn prerequisites_missing() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .unwrap_or("unknown");
    if euid != "0" {
        return Some(format!("not root (effective uid {euid})"));
    }
    for tool in [["ip", "-V"], ["curl", "--version"]] {
        let ran = Command::new(tool[0])
            .arg(tool[1])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !ran.is_ok_and(|s| s.success()) {
            return Some(format!("{} is not installed", tool[0]));
        }
    }
    None
}

fn world() -> String {
    format!(
        "tenantId: {TENANT}\n\
         subscriptions:\n  - id: 6a1c4b1e-2f0d-4c5e-9a7b-3d2e1f0a9b8c\n    resourceGroups: [{{name: rg}}]\n\
         virtualMachines:\n  - {{resourceGroup: rg, name: vm, identity: {{systemAssigned: true}}, \
         machine: {{imds: \"169.254.169.254:80\"}}}}\n"
    )
}

/// Waits for the emulator's last start-up line (`  CA …`, printed once every listener is
/// bound); on an early exit, fails with what it printed on stderr.
fn wait_until_listening(emulator: &mut Child) {
    let stdout = emulator.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.trim_start().starts_with("CA ") {
                let _ = tx.send(());
            }
        }
    });
    if rx.recv_timeout(Duration::from_secs(60)).is_ok() {
        return;
    }
    let _ = emulator.kill();
    let mut stderr = String::new();
    if let Some(mut err) = emulator.stderr.take() {
        let _ = err.read_to_string(&mut stderr);
    }
    panic!("the emulator did not start in the namespace:\n{stderr}");
}

#[test]
fn a_client_in_a_fresh_namespace_gets_a_token_from_169_254_169_254() {
    if let Some(why) = prerequisites_missing() {
        panic!("this test needs root, iproute2 and curl: {why}");
    }
    let mut ns = Namespace::create();

    // Nothing may leave: check the namespace's own route tables before sending anything.
    let mut routes = parse_ipv4_routes(&ns.exec(&["cat", "/proc/net/route"])).expect("IPv4");
    routes.extend(parse_ipv6_routes(&ns.exec(&["cat", "/proc/net/ipv6_route"])).expect("IPv6"));
    assert_eq!(route_out(&routes), None, "the namespace has a route out");

    let dir = tempfile::tempdir().expect("a temporary directory");
    let world_file = dir.path().join("world.yaml");
    std::fs::write(&world_file, world()).expect("the world file is written");
    let ca_file = dir.path().join("ca.pem");
    let mut emulator = ns
        .command(&[
            EMULATOR,
            "--world",
            world_file.to_str().expect("UTF-8 path"),
            "--ca-file",
            ca_file.to_str().expect("UTF-8 path"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the emulator starts");
    wait_until_listening(&mut emulator);
    ns.process = Some(emulator);

    let body = ns.exec(&[
        "curl",
        "--silent",
        "--show-error",
        "--fail",
        "--noproxy",
        "*",
        "--max-time",
        "30",
        "--header",
        "Metadata: true",
        "http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://management.azure.com/",
    ]);
    let token: Value = serde_json::from_str(&body).expect("a JSON token answer");
    assert_eq!(token["token_type"], "Bearer", "{token}");
    assert_eq!(token["resource"], "https://management.azure.com/");
    let jwt = token["access_token"].as_str().expect("an access token");
    let claims = podid_emulator::testing::jwt_claims(jwt);
    assert_eq!(claims["tid"], TENANT);
    assert!(
        claims["xms_mirid"]
            .as_str()
            .is_some_and(|id| id.ends_with("/providers/Microsoft.Compute/virtualMachines/vm")),
        "{claims}"
    );
}
