//! The redirect of pods' IMDS traffic to NMI: a `nat` chain `aad-metadata` with one DNAT rule
//! and a RETURN, jumped to first from `PREROUTING`, as upstream kept it.
//!
//! Commands go through a [`Runner`], so tests check the exact sequence with a recording runner
//! and never touch a real network namespace.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

/// The custom chain, upstream's name (its e2e suite and operators look for it).
pub const CHAIN: &str = "aad-metadata";
const TABLE: &str = "nat";
const PREROUTING: &str = "PREROUTING";

/// What a command printed and how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Output {
    /// The exit code; `None` when killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    fn succeeded(&self) -> bool {
        self.code == Some(0)
    }
}

/// Runs one program with arguments and waits for it.
pub trait Runner: Send + Sync {
    /// Runs `program` with `input` on its standard input (`nft -f -` reads a whole transaction
    /// there).
    fn run_with_input(
        &self,
        program: &str,
        args: &[String],
        input: &str,
    ) -> std::io::Result<Output>;

    fn run(&self, program: &str, args: &[String]) -> std::io::Result<Output> {
        self.run_with_input(program, args, "")
    }
}

/// Runs real commands.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemRunner;

impl Runner for SystemRunner {
    fn run_with_input(
        &self,
        program: &str,
        args: &[String],
        input: &str,
    ) -> std::io::Result<Output> {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        // The programs run here read their whole input before they write much, so writing it
        // all before reading their output cannot deadlock. A program that exits without reading
        // it (a broken pipe) still reports why through its exit code and stderr.
        let written = match child.stdin.take() {
            Some(mut stdin) => stdin.write_all(input.as_bytes()),
            None => Ok(()),
        };
        let output = child.wait_with_output()?;
        if let Err(error) = written
            && error.kind() != std::io::ErrorKind::BrokenPipe
        {
            return Err(error);
        }
        Ok(Output {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IptablesError {
    #[error("running {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed ({code:?}): {stderr}")]
    Failed {
        command: String,
        code: Option<i32>,
        stderr: String,
    },
}

/// Where pods' IMDS traffic goes: `<metadata_ip>:<metadata_port>` → `<target>:<port>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Redirect {
    /// `--metadata-ip`.
    pub metadata_ip: Ipv4Addr,
    /// `--metadata-port`.
    pub metadata_port: u16,
    /// `--nmi-listen-address`, or 127.0.0.1 when that is 0.0.0.0 (upstream's rule).
    pub target: Ipv4Addr,
    /// `--nmi-port`.
    pub port: u16,
}

impl Redirect {
    pub fn new(metadata_ip: Ipv4Addr, metadata_port: u16, listen: Ipv4Addr, port: u16) -> Self {
        let target = if listen.is_unspecified() {
            Ipv4Addr::LOCALHOST
        } else {
            listen
        };
        Self {
            metadata_ip,
            metadata_port,
            target,
            port,
        }
    }

    /// The DNAT rule's arguments after `-A <chain>`.
    fn dnat_rule(&self) -> Vec<String> {
        words(&format!(
            "! -s 127.0.0.1/32 -d {}/32 -p tcp --dport {} -j DNAT --to-destination {}:{}",
            self.metadata_ip, self.metadata_port, self.target, self.port
        ))
    }

    /// `iptables -t nat -S aad-metadata` when the chain is as it should be.
    fn expected_listing(&self) -> [String; 3] {
        [
            format!("-N {CHAIN}"),
            format!(
                "-A {CHAIN} ! -s 127.0.0.1/32 -d {}/32 -p tcp -m tcp --dport {} -j DNAT --to-destination {}:{}",
                self.metadata_ip, self.metadata_port, self.target, self.port
            ),
            format!("-A {CHAIN} -j RETURN"),
        ]
    }
}

fn words(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_owned).collect()
}

/// The chain, the rules and the jump, kept or removed through a [`Runner`].
pub struct Iptables {
    runner: Arc<dyn Runner>,
    redirect: Redirect,
}

impl Iptables {
    pub fn new(runner: Arc<dyn Runner>, redirect: Redirect) -> Self {
        Self { runner, redirect }
    }

    /// One upstream sync: create the chain if missing; rewrite it unless it lists exactly the
    /// expected rules; insert the jump first in PREROUTING unless present.
    pub fn sync(&self) -> Result<(), IptablesError> {
        let listing = self.chain_listing()?;
        let listed: Vec<&str> = match &listing {
            Some(listing) => listing.lines().map(str::trim).collect(),
            None => {
                self.iptables(&["-N", CHAIN])?;
                Vec::new()
            }
        };
        if listed != self.redirect.expected_listing() {
            self.iptables(&["-F", CHAIN])?;
            let mut dnat = vec!["-A".to_owned(), CHAIN.to_owned()];
            dnat.extend(self.redirect.dnat_rule());
            self.iptables_owned(&dnat)?;
            self.iptables(&["-A", CHAIN, "-j", "RETURN"])?;
        }
        if !self.jump_exists()? {
            self.iptables(&["-I", PREROUTING, "1", "-j", CHAIN])?;
        }
        Ok(())
    }

    /// Removes the jump, then flushes and deletes the chain (what upstream did on SIGTERM).
    pub fn remove(&self) -> Result<(), IptablesError> {
        if self.jump_exists()? {
            self.iptables(&["-D", PREROUTING, "-j", CHAIN])?;
        }
        if self.chain_listing()?.is_some() {
            self.iptables(&["-F", CHAIN])?;
            self.iptables(&["-X", CHAIN])?;
        }
        Ok(())
    }

    /// Deletes the tracked connections to the metadata address, so connections opened before
    /// the rule existed are intercepted too. `conntrack` ends with 1 when none matched.
    pub fn delete_conntrack(&self) -> Result<(), IptablesError> {
        let args = words(&format!(
            "-D -p tcp --orig-dst {} --orig-port-dst {}",
            self.redirect.metadata_ip, self.redirect.metadata_port
        ));
        let output = self.run("conntrack", &args)?;
        let nothing_matched = output.code == Some(1) && output.stderr.contains("0 flow entries");
        if output.succeeded() || nothing_matched {
            Ok(())
        } else {
            Err(failed("conntrack", &args, &output))
        }
    }

    /// `-C PREROUTING -j aad-metadata`: 0 present, 1 absent, anything else an error.
    fn jump_exists(&self) -> Result<bool, IptablesError> {
        Ok(self.probe(&["-C", PREROUTING, "-j", CHAIN])?.is_some())
    }

    /// `-S aad-metadata`: the listing, or `None` when the chain does not exist.
    fn chain_listing(&self) -> Result<Option<String>, IptablesError> {
        self.probe(&["-S", CHAIN])
    }

    /// A command whose exit code 1 means "no such chain or rule"; any other failure is an
    /// error.
    fn probe(&self, args: &[&str]) -> Result<Option<String>, IptablesError> {
        let args = nat_args(args);
        let output = self.run("iptables", &args)?;
        match output.code {
            Some(0) => Ok(Some(output.stdout)),
            Some(1) => Ok(None),
            _ => Err(failed("iptables", &args, &output)),
        }
    }

    fn iptables(&self, args: &[&str]) -> Result<Output, IptablesError> {
        let owned: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        self.iptables_owned(&owned)
    }

    fn iptables_owned(&self, args: &[String]) -> Result<Output, IptablesError> {
        let args = nat_args(args);
        let output = self.run("iptables", &args)?;
        if output.succeeded() {
            Ok(output)
        } else {
            Err(failed("iptables", &args, &output))
        }
    }

    fn run(&self, program: &str, args: &[String]) -> Result<Output, IptablesError> {
        self.runner
            .run(program, args)
            .map_err(|source| IptablesError::Spawn {
                program: program.to_owned(),
                source,
            })
    }
}

/// `-w -t nat <args>`: wait for the xtables lock as upstream's library did.
fn nat_args<S: AsRef<str>>(args: &[S]) -> Vec<String> {
    ["-w", "-t", TABLE]
        .into_iter()
        .map(str::to_owned)
        .chain(args.iter().map(|a| a.as_ref().to_owned()))
        .collect()
}

fn failed(program: &str, args: &[String], output: &Output) -> IptablesError {
    IptablesError::Failed {
        command: format!("{program} {}", args.join(" ")),
        code: output.code,
        stderr: output.stderr.trim().to_owned(),
    }
}

/// Syncs now and every `interval`; after the first sync, deletes conntrack entries when asked
/// and calls `on_first`. Returns only on an error, which upstream treated as fatal.
pub async fn keep_synced(
    iptables: Arc<Iptables>,
    interval: Duration,
    delete_conntrack: bool,
    on_first: impl FnOnce() + Send,
) -> IptablesError {
    let blocking = |iptables: Arc<Iptables>, conntrack: bool| async move {
        tokio::task::spawn_blocking(move || {
            iptables.sync()?;
            if conntrack {
                iptables.delete_conntrack()?;
            }
            Ok(())
        })
        .await
        .unwrap_or_else(|join| {
            Err(IptablesError::Spawn {
                program: "iptables".into(),
                source: std::io::Error::other(join),
            })
        })
    };
    if let Err(error) = blocking(iptables.clone(), delete_conntrack).await {
        return error;
    }
    tracing::info!(chain = CHAIN, "iptables rules in place");
    on_first();
    let mut ticks = tokio::time::interval(interval);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        if let Err(error) = blocking(iptables.clone(), false).await {
            return error;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use pretty_assertions::assert_eq;

    use super::*;

    /// Records every command and answers from a script: the first rule whose prefix matches
    /// the command line gives the output, else success with no output.
    #[derive(Default)]
    struct Recording {
        commands: Mutex<Vec<String>>,
        script: Vec<(&'static str, Output)>,
    }

    impl Recording {
        fn answering(script: Vec<(&'static str, Output)>) -> Arc<Self> {
            Arc::new(Self {
                script,
                ..Self::default()
            })
        }

        fn commands(&self) -> Vec<String> {
            self.commands.lock().unwrap().clone()
        }
    }

    impl Runner for Recording {
        fn run_with_input(
            &self,
            program: &str,
            args: &[String],
            _input: &str,
        ) -> std::io::Result<Output> {
            let line = format!("{program} {}", args.join(" "));
            self.commands.lock().unwrap().push(line.clone());
            Ok(self
                .script
                .iter()
                .find(|(prefix, _)| line.starts_with(prefix))
                .map(|(_, output)| output.clone())
                .unwrap_or(Output {
                    code: Some(0),
                    ..Output::default()
                }))
        }
    }

    fn exit(code: i32, stdout: &str, stderr: &str) -> Output {
        Output {
            code: Some(code),
            stdout: stdout.into(),
            stderr: stderr.into(),
        }
    }

    fn redirect() -> Redirect {
        Redirect::new(
            Ipv4Addr::new(169, 254, 169, 254),
            80,
            Ipv4Addr::UNSPECIFIED,
            2579,
        )
    }

    const NO_CHAIN: &str = "iptables: No chain/target/match by that name.";

    #[test]
    fn a_fresh_node_gets_the_chain_its_rules_and_the_jump_first() {
        let runner = Recording::answering(vec![
            ("iptables -w -t nat -S aad-metadata", exit(1, "", NO_CHAIN)),
            ("iptables -w -t nat -C PREROUTING", exit(1, "", "Bad rule")),
        ]);
        Iptables::new(runner.clone(), redirect()).sync().unwrap();
        assert_eq!(
            runner.commands(),
            [
                "iptables -w -t nat -S aad-metadata",
                "iptables -w -t nat -N aad-metadata",
                "iptables -w -t nat -F aad-metadata",
                "iptables -w -t nat -A aad-metadata ! -s 127.0.0.1/32 -d 169.254.169.254/32 -p tcp --dport 80 -j DNAT --to-destination 127.0.0.1:2579",
                "iptables -w -t nat -A aad-metadata -j RETURN",
                "iptables -w -t nat -C PREROUTING -j aad-metadata",
                "iptables -w -t nat -I PREROUTING 1 -j aad-metadata",
            ]
        );
    }

    #[test]
    fn rules_in_place_are_left_alone() {
        let listing = "-N aad-metadata\n-A aad-metadata ! -s 127.0.0.1/32 -d 169.254.169.254/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 127.0.0.1:2579\n-A aad-metadata -j RETURN\n";
        let runner = Recording::answering(vec![(
            "iptables -w -t nat -S aad-metadata",
            exit(0, listing, ""),
        )]);
        Iptables::new(runner.clone(), redirect()).sync().unwrap();
        assert_eq!(
            runner.commands(),
            [
                "iptables -w -t nat -S aad-metadata",
                "iptables -w -t nat -C PREROUTING -j aad-metadata",
            ]
        );
    }

    #[test]
    fn a_changed_chain_is_rewritten() {
        let listing = "-N aad-metadata\n-A aad-metadata -j RETURN\n";
        let runner = Recording::answering(vec![(
            "iptables -w -t nat -S aad-metadata",
            exit(0, listing, ""),
        )]);
        let custom = Redirect::new(
            Ipv4Addr::new(169, 254, 169, 254),
            80,
            Ipv4Addr::new(10, 0, 0, 4),
            2600,
        );
        Iptables::new(runner.clone(), custom).sync().unwrap();
        let commands = runner.commands();
        assert_eq!(commands[1], "iptables -w -t nat -F aad-metadata");
        assert!(commands[2].ends_with("--dport 80 -j DNAT --to-destination 10.0.0.4:2600"));
    }

    #[test]
    fn any_other_failure_is_an_error() {
        let runner = Recording::answering(vec![
            ("iptables -w -t nat -S aad-metadata", exit(1, "", NO_CHAIN)),
            (
                "iptables -w -t nat -N",
                exit(4, "", "Permission denied (you must be root)"),
            ),
        ]);
        let error = Iptables::new(runner, redirect()).sync().unwrap_err();
        assert_eq!(
            error.to_string(),
            "`iptables -w -t nat -N aad-metadata` failed (Some(4)): Permission denied (you must be root)"
        );
        let runner = Recording::answering(vec![("iptables -w -t nat -C", exit(2, "", "bad"))]);
        assert!(Iptables::new(runner, redirect()).remove().is_err());
    }

    #[test]
    fn removal_deletes_the_jump_then_the_chain() {
        let runner = Recording::answering(vec![]);
        Iptables::new(runner.clone(), redirect()).remove().unwrap();
        assert_eq!(
            runner.commands(),
            [
                "iptables -w -t nat -C PREROUTING -j aad-metadata",
                "iptables -w -t nat -D PREROUTING -j aad-metadata",
                "iptables -w -t nat -S aad-metadata",
                "iptables -w -t nat -F aad-metadata",
                "iptables -w -t nat -X aad-metadata",
            ]
        );
        let gone = Recording::answering(vec![
            ("iptables -w -t nat -C", exit(1, "", "Bad rule")),
            ("iptables -w -t nat -S", exit(1, "", NO_CHAIN)),
        ]);
        Iptables::new(gone.clone(), redirect()).remove().unwrap();
        assert_eq!(gone.commands().len(), 2);
    }

    #[test]
    fn conntrack_entries_for_the_metadata_address_are_deleted() {
        let runner = Recording::answering(vec![(
            "conntrack",
            exit(
                1,
                "",
                "conntrack v1.4.6 (conntrack-tools): 0 flow entries have been deleted.",
            ),
        )]);
        Iptables::new(runner.clone(), redirect())
            .delete_conntrack()
            .unwrap();
        assert_eq!(
            runner.commands(),
            ["conntrack -D -p tcp --orig-dst 169.254.169.254 --orig-port-dst 80"]
        );
        let broken =
            Recording::answering(vec![("conntrack", exit(1, "", "Operation not permitted"))]);
        assert!(
            Iptables::new(broken, redirect())
                .delete_conntrack()
                .is_err()
        );
    }

    #[tokio::test]
    async fn the_loop_reports_ready_after_the_first_sync_and_stops_on_error() {
        let runner = Recording::answering(vec![(
            "iptables -w -t nat -S aad-metadata",
            exit(3, "", "xtables lock"),
        )]);
        let ready = std::sync::atomic::AtomicBool::new(false);
        let error = keep_synced(
            Arc::new(Iptables::new(runner, redirect())),
            Duration::from_secs(60),
            false,
            || ready.store(true, std::sync::atomic::Ordering::SeqCst),
        )
        .await;
        assert!(!ready.load(std::sync::atomic::Ordering::SeqCst));
        assert!(matches!(error, IptablesError::Failed { .. }), "{error}");
    }

    #[test]
    fn the_system_runner_passes_input_and_reports_a_program_that_ignores_it() {
        let args = |list: &[&str]| list.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>();
        let script = "table bridge t\n".repeat(10_000);
        let echoed = SystemRunner.run_with_input("cat", &[], &script).unwrap();
        assert_eq!((echoed.code, echoed.stdout.len()), (Some(0), script.len()));
        // Exits at once without reading 150 KB: its exit code and stderr, not a broken pipe.
        let ignored = SystemRunner
            .run_with_input("sh", &args(&["-c", "echo no >&2; exit 3"]), &script)
            .unwrap();
        assert_eq!((ignored.code, ignored.stderr.as_str()), (Some(3), "no\n"));
        assert!(SystemRunner.run("/nonexistent/program", &[]).is_err());
    }
}
