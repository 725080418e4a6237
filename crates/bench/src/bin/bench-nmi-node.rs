//! `bench-nmi-node`: the load generator of the node lab's NMI benchmark
//! (tests/node/bench_nmi_node.py). One process runs in one network namespace (a pod's, entered
//! with `nsenter -n` after the lab's safety checks, or the node's for direct IMDS calls) and keeps
//! `--connections` HTTP/1.1 keep-alive connections to `--addr`, each with one request in flight,
//! from `--start-at` (Unix ms, so the processes of all pods start together) for `--duration-ms`.
//! It prints `ok N`, `errors N` and then one latency in microseconds per line.
//!
//! Only the standard library: the driver builds it with plain `rustc` (no lock on the shared
//! target directory), and `cargo build -p podid-bench --bin bench-nmi-node` builds it as well.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

struct Args {
    addr: SocketAddr,
    path: String,
    connections: usize,
    start_at_ms: u128,
    duration: Duration,
}

fn parse_args() -> Result<Args, String> {
    let mut addr = None;
    let mut path = None;
    let mut connections = 1;
    let mut start_at_ms = 0;
    let mut duration = Duration::from_secs(5);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--addr" => addr = Some(value.parse().map_err(|e| format!("--addr: {e}"))?),
            "--path" => path = Some(value),
            "--connections" => {
                connections = value.parse().map_err(|e| format!("--connections: {e}"))?
            }
            "--start-at" => start_at_ms = value.parse().map_err(|e| format!("--start-at: {e}"))?,
            "--duration-ms" => {
                duration =
                    Duration::from_millis(value.parse().map_err(|e| format!("--duration-ms: {e}"))?)
            }
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(Args {
        addr: addr.ok_or("--addr is required")?,
        path: path.ok_or("--path is required")?,
        connections,
        start_at_ms,
        duration,
    })
}

/// Reads one response (headers, then a `Content-Length` body); returns its status.
fn read_response(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> std::io::Result<u16> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let mut chunk = [0u8; 16384];
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buffer[..end]).map_err(|_| bad("headers not UTF-8"))?;
            let status = head
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| bad("no status"))?;
            let length: usize = head
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .ok_or_else(|| bad("no Content-Length"))?;
            let total = end + 4 + length;
            while buffer.len() < total {
                let n = stream.read(&mut chunk)?;
                if n == 0 {
                    return Err(bad("closed in the body"));
                }
                buffer.extend_from_slice(&chunk[..n]);
            }
            buffer.drain(..total);
            return Ok(status);
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(bad("closed before an answer"));
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

fn worker(args: &Args) -> (usize, usize, Vec<u32>) {
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: 169.254.169.254\r\nMetadata: true\r\nUser-Agent: bench-nmi-node\r\n\r\n",
        args.path
    );
    let connect = || {
        let stream = TcpStream::connect_timeout(&args.addr, Duration::from_secs(5))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok::<_, std::io::Error>(stream)
    };
    let mut stream = connect().ok();
    let wait = args.start_at_ms.saturating_sub(now_ms());
    std::thread::sleep(Duration::from_millis(wait as u64));
    let end = Instant::now() + args.duration;
    let (mut ok, mut errors, mut latencies) = (0, 0, Vec::with_capacity(100_000));
    let mut buffer = Vec::with_capacity(16384);
    while Instant::now() < end {
        let started = Instant::now();
        let answer = match stream.as_mut() {
            Some(s) => s
                .write_all(request.as_bytes())
                .and_then(|()| read_response(s, &mut buffer)),
            None => Err(std::io::Error::other("not connected")),
        };
        match answer {
            Ok(status) => {
                latencies.push(started.elapsed().as_micros().min(u32::MAX as u128) as u32);
                if status == 200 { ok += 1 } else { errors += 1 }
            }
            Err(_) => {
                errors += 1;
                buffer.clear();
                std::thread::sleep(Duration::from_millis(10));
                stream = connect().ok();
            }
        }
    }
    (ok, errors, latencies)
}

fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(error) => {
            eprintln!("bench-nmi-node: {error}");
            std::process::exit(2);
        }
    };
    let results: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..args.connections)
            .map(|_| scope.spawn(|| worker(&args)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let mut out = String::new();
    let ok: usize = results.iter().map(|r| r.0).sum();
    let errors: usize = results.iter().map(|r| r.1).sum();
    out.push_str(&format!("ok {ok}\nerrors {errors}\n"));
    for (_, _, latencies) in &results {
        for latency in latencies {
            out.push_str(&format!("{latency}\n"));
        }
    }
    let _ = std::io::stdout().write_all(out.as_bytes());
}
