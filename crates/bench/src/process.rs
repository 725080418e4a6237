//! What a running process has used so far, from /proc.

use anyhow::Context;

/// Peak resident set and CPU time (user + system) of one process.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    pub peak_rss_kib: u64,
    pub cpu_secs: f64,
}

impl Usage {
    pub fn peak_rss_mib(&self) -> f64 {
        self.peak_rss_kib as f64 / 1024.0
    }
}

/// Linux reports CPU times in clock ticks of 1/100 s (USER_HZ) on every architecture we run on.
const TICKS_PER_SECOND: f64 = 100.0;

pub fn usage(pid: u32) -> anyhow::Result<Usage> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("process {pid} is gone"))?;
    let peak_rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("no VmHWM")?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command (which may hold spaces) start at field 3; utime and stime are
    // fields 14 and 15.
    let rest = stat.rsplit_once(')').context("malformed stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> anyhow::Result<f64> {
        Ok(fields.get(i - 3).context("short stat")?.parse::<f64>()?)
    };
    Ok(Usage {
        peak_rss_kib,
        cpu_secs: (ticks(14)? + ticks(15)?) / TICKS_PER_SECOND,
    })
}

/// A process's resident memory now, split as the kernel counts it: anonymous pages (heap,
/// stacks, written data) and file-backed pages (the code and read-only data of the binary and
/// its libraries, which the page cache can share and drop).
#[derive(Debug, Clone, Copy, Default)]
pub struct Resident {
    pub anon_kib: u64,
    pub file_kib: u64,
}

impl Resident {
    pub fn anon_mib(&self) -> f64 {
        self.anon_kib as f64 / 1024.0
    }

    pub fn file_mib(&self) -> f64 {
        self.file_kib as f64 / 1024.0
    }
}

pub fn resident(pid: u32) -> anyhow::Result<Resident> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("process {pid} is gone"))?;
    let field = |name: &str| -> anyhow::Result<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .with_context(|| format!("no {name}"))
    };
    Ok(Resident {
        anon_kib: field("RssAnon:")?,
        file_kib: field("RssFile:")?,
    })
}

/// The process running `binary` whose working directory is `cwd` (how upstream's MIC, started by
/// the test kit, is found: its directory is its own).
pub fn find_by_exe_and_cwd(binary: &std::path::Path, cwd: &std::path::Path) -> anyhow::Result<u32> {
    for entry in std::fs::read_dir("/proc")? {
        let entry = entry?;
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let exe = std::fs::read_link(entry.path().join("exe"));
        let dir = std::fs::read_link(entry.path().join("cwd"));
        if let (Ok(exe), Ok(dir)) = (exe, dir)
            && exe == binary
            && dir == cwd
        {
            return Ok(pid);
        }
    }
    anyhow::bail!("no process runs {} in {}", binary.display(), cwd.display())
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_process_has_a_peak_rss_and_cpu_time() {
        let usage = super::usage(std::process::id()).unwrap();
        assert!(usage.peak_rss_kib > 0);
        assert!(usage.cpu_secs >= 0.0);
        let resident = super::resident(std::process::id()).unwrap();
        assert!(resident.anon_kib > 0 && resident.file_kib > 0);
    }
}
