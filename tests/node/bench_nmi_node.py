"""NMI on the lab node, podid vs upstream (issue 11 §5): cache-hit token requests (DEMO's client
ID, ARM's resource) from many pods' network namespaces through the real DNAT path, at several
concurrencies, against podid's NMI (as shipped, then with its port guard off) and then upstream's
v1.8.17 on the same node, and the same requests straight to the emulator's IMDS: from the node's
namespace, and, after NMI is removed, from the same pods over the same veth and bridge (the
baseline of what NMI adds to a pod's call). Every path is measured once per round (--rounds,
default 3), the rounds one after another; the table gives each row's median over the rounds and,
for what NMI adds at p99, the median and range of the rounds' differences. Prints a markdown table.

    cargo build -p podid-emulator --bin azure-emulator
    scripts/build-images --upstream-nmi --out DIR     # DIR holds podid's archives and upstream's NMI
    PODID_IMAGES_DIR=DIR scripts/node run -- python3 tests/node/bench_nmi_node.py [--pods 100]

The load generator is crates/bench/src/bin/bench-nmi-node.rs (standard library only, built here
with rustc): one process per pod, entered into the pod's network namespace with `nsenter -n` after
the lab's checks (not the machine's namespace, no default route, 169.254.169.254 via the lab
bridge); a row's connections are spread over min(concurrency, pods) pods and all start at the same
wall-clock instant. Both NMIs run without the shipped manifest's CPU limit (200m), which would
otherwise cap them, not measure them. NMI's CPU is its process's utime+stime over the row; its
memory is VmHWM (peak RSS) of the process after each row.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from lab import (  # noqa: E402
    ARM_RESOURCE, DEMO_CLIENT_ID, NODE, ROOT, Lab, LabError, install_podid, run,
    token_url,
)
from test_spoofing import guard_table, guarded_ports  # noqa: E402
from test_upstream_nmi import (  # noqa: E402
    UPSTREAM_IMAGE, UPSTREAM_NMI_ROLE, nmi_image, podid_nmi_role, use_nmi,
)

METADATA = "169.254.169.254:80"
EMULATOR = os.environ.get("PODID_AZURE_EMULATOR_BIN", str(ROOT / "target" / "debug" / "azure-emulator"))
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def build_generator(out: Path) -> Path:
    binary = out / "bench-nmi-node"
    run("rustc", "--edition", "2024", "-O", "-o", str(binary),
        str(ROOT / "crates" / "bench" / "src" / "bin" / "bench-nmi-node.rs"), timeout=300)
    return binary


def checked_pod_pids(lab: Lab, names: list[str]) -> list[int]:
    """Each pod's sandbox PID, after lab.check_pod_namespace's checks (the node-wide check once)."""
    run(str(NODE), "check", "with-pods")
    pids = [lab.pod_pid(name) for name in names]
    for pid in pids:
        lab.check_pod_namespace(pid, node_checked=True)
    return pids


def node_pid() -> int:
    """A process in the node's namespace (the lab's supervisor's child), as `scripts/node exec`."""
    state = Path(os.environ.get("PODID_NODE_DIR") or Path.home() / ".cache" / "podid" / "node")
    supervisor = (state / "supervisor.pid").read_text().strip()
    pid = int(run("pgrep", "-P", supervisor).split()[0])
    if run("ip", "netns", "identify", str(pid)).strip() != "podid-node0":
        raise LabError(f"process {pid} is not in the node's namespace")
    return pid


def machine_cpu() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine (/proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def children_cpu() -> float:
    """CPU seconds of this process's waited-for children (the generator processes)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def load(generator: Path, pids: list[int], concurrency: int, seconds: float, path: str) -> dict:
    """One row: `concurrency` connections over min(concurrency, len(pids)) namespaces. Besides the
    answers: the generator's own CPU per request (so a row bound by the generator shows) and how
    busy the machine's cores were (everything on them, other users' work included)."""
    spread = pids[:min(concurrency, len(pids))]
    shares = [concurrency // len(spread) + (i < concurrency % len(spread)) for i in range(len(spread))]
    start_at = int(time.time() * 1000) + 2000 + 15 * len(spread)
    procs = [subprocess.Popen(
        ["nsenter", "-t", str(pid), "-n", str(generator), "--addr", METADATA, "--path", path,
         "--connections", str(share), "--start-at", str(start_at),
         "--duration-ms", str(int(seconds * 1000))],
        stdout=subprocess.PIPE, text=True) for pid, share in zip(spread, shares)]
    ok = errors = 0
    latencies: list[int] = []
    generator_cpu = children_cpu()
    time.sleep(max(0.0, start_at / 1000 - time.time()))
    busy, total = machine_cpu()
    time.sleep(seconds)
    busy, total = [after - before for after, before in zip(machine_cpu(), (busy, total))]
    for proc in procs:
        out, _ = proc.communicate(timeout=seconds + 120)
        lines = out.split("\n")
        ok += int(lines[0].split()[1])
        errors += int(lines[1].split()[1])
        latencies += [int(x) for x in lines[2:] if x]
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] / 1000 if latencies else float("nan")

    generator_cpu = children_cpu() - generator_cpu
    return {"ok": ok, "errors": errors, "rate": ok / seconds, "p50": pct(0.50), "p99": pct(0.99),
            "pods": len(spread), "gen_us": generator_cpu * 1e6 / max(1, ok + errors),
            "busy": 100 * busy / max(1, total)}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise LabError(f"no {key} for {pid}")


NO_CNI_RESULTS = "--cni-results-dir=/run/podid-bench-no-cni-results"


def set_port_guard(lab: Lab, on: bool) -> None:
    """podid's NMI with its port guard (as shipped) or without it: a results directory that does
    not exist turns the guard off (NMI logs a warning). Upstream's NMI must not get the flag."""
    args = lab.get("daemonset", "nmi")["spec"]["template"]["spec"]["containers"][0]["args"]
    if on and NO_CNI_RESULTS in args:
        patch = [{"op": "remove", "path": f"/spec/template/spec/containers/0/args/{args.index(NO_CNI_RESULTS)}"}]
    elif not on and NO_CNI_RESULTS not in args:
        patch = [{"op": "add", "path": "/spec/template/spec/containers/0/args/-", "value": NO_CNI_RESULTS}]
    else:
        return
    lab.kubectl("patch", "daemonset", "nmi", "--type=json", "-p", json.dumps(patch))
    lab.kubectl("rollout", "status", "daemonset/nmi", "--timeout=120s")


def nmi_pid(lab: Lab) -> int:
    pods = [p for p in lab.pods_labelled("component=nmi") if not p["metadata"].get("deletionTimestamp")]
    return lab.process_of(pods[0]["metadata"]["name"], "nmi")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pods", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--concurrency", default="1,16,128")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    path = token_url(DEMO_CLIENT_ID, ARM_RESOURCE).removeprefix("http://169.254.169.254")

    lab = Lab()
    # As bench-nmi: IMDS's own limits off (real IMDS: 20 tokens/s, 5 at once; the emulator models
    # them), so the rows measure NMI, not IMDS's throttling.
    lab.admin("PATCH", "/admin/knobs", {"imds": {"requestsPerSecond": 0, "maxConcurrent": 0}})
    install_podid(lab)
    podid_image = nmi_image(lab)
    # The shipped limit (cpu 200m) would cap both NMIs; the benchmark measures them unthrottled.
    lab.kubectl("patch", "daemonset", "nmi", "--type=json", "-p",
                '[{"op":"remove","path":"/spec/template/spec/containers/0/resources/limits"}]')
    lab.kubectl("rollout", "status", "daemonset/nmi", "--timeout=120s")
    lab.apply_file(ROOT / "examples" / "seed" / "azureidentity-demo.yaml")
    names = [f"bench-{i}" for i in range(args.pods)]
    lab.apply([lab.pause_pod(n, labels={"aadpodidbinding": "DEMO"}) for n in names])
    started = time.monotonic()
    lab.wait(f"{args.pods} pods Running with IPs", lambda: sum(
        1 for p in lab.pods_labelled("aadpodidbinding=DEMO")
        if p["metadata"]["name"].startswith("bench-") and p["status"].get("podIP")
        and p["status"].get("phase") == "Running") == args.pods, timeout=600, interval=2)
    lab.wait("their identities Assigned", lambda: sum(
        1 for a in lab.assigned_identities() if a["spec"].get("pod", "").startswith("bench-")
        and a.get("status", {}).get("status") == "Assigned") == args.pods, timeout=300, interval=2)
    print(f"{args.pods} pods up and assigned in {time.monotonic() - started:.0f} s", file=sys.stderr)

    with tempfile.TemporaryDirectory() as tmp:
        generator = build_generator(Path(tmp))
        direct_pid = node_pid()
        podid_role = podid_nmi_role(lab)
        results: dict[tuple[str, int], list[dict]] = defaultdict(list)
        # Every path once per round, the rounds one after another: a row's value is the median
        # of its rounds, and what NMI adds is taken within each round (the paths measured
        # minutes apart, not a whole run apart), so the machine's drift shows as a range instead
        # of deciding the result.
        for round_number in range(1, args.rounds + 1):
            # Direct: the same requests from the node's namespace, where 169.254.169.254 is the
            # emulator itself (NMI's DNAT is in PREROUTING: the node's own packets are not
            # redirected).
            run(str(NODE), "check", "with-pods")
            load(generator, [direct_pid], 16, 1, path)  # warm-up
            for c in concurrencies:
                measure(results, "direct", c, round_number,
                        load(generator, [direct_pid] * args.pods, c, args.seconds, path))
            for flavor, image, role in (("podid", podid_image, podid_role),
                                        ("podid, no guard", podid_image, podid_role),
                                        ("upstream", UPSTREAM_IMAGE, UPSTREAM_NMI_ROLE)):
                # podid's port guard (every pod's bridge port looked up in one nftables table) is
                # part of what a pod's call goes through; the middle run measures NMI without it.
                # The guard is on when the table checks some port (without a results directory
                # none is).
                set_port_guard(lab, flavor != "podid, no guard")
                use_nmi(lab, image, role)
                lab.wait("the port guard as this run wants it", lambda: bool(guarded_ports(lab))
                         == (flavor == "podid"), timeout=60)
                pids = checked_pod_pids(lab, names)
                lab.wait(f"{flavor}'s NMI answering",
                         lambda: load(generator, pids[:1], 1, 0.5, path)["ok"] > 0, timeout=120, interval=2)
                pid = nmi_pid(lab)
                load(generator, pids, 16, 1, path)  # warm-up
                for c in concurrencies:
                    cpu = cpu_seconds(pid)
                    row = load(generator, pids, c, args.seconds, path)
                    row["cpu_us"] = (cpu_seconds(pid) - cpu) * 1e6 / max(1, row["ok"] + row["errors"])
                    row["hwm"] = status_kib(pid, "VmHWM") / 1024
                    measure(results, flavor, c, round_number, row)
            # Direct from the pods: no NMI on the node (scheduled nowhere; NMI removes its DNAT
            # and its port guard's table as it stops), so the same requests leave the same pods
            # over the same veth and bridge and reach the emulator's IMDS itself: a pod's call
            # without NMI in the way, the baseline of what NMI adds. MIC stays, so the identity
            # stays on the node's machine.
            schedule_nmi(lab, running=False)
            lab.wait("NMI gone, its rules with it", lambda: not lab.pods_labelled("component=nmi")
                     and not lab.nat_rules() and guard_table(lab) is None, timeout=120)
            pids = checked_pod_pids(lab, names)
            load(generator, pids, 16, 1, path)  # warm-up
            for c in concurrencies:
                measure(results, "pods direct", c, round_number, load(generator, pids, c, args.seconds, path))
            schedule_nmi(lab, running=True)

    print(f"Measured {time.strftime('%Y-%m-%d', time.gmtime())} on {os.cpu_count()} cores; "
          f"{args.pods} pods, {args.seconds:.0f} s per row, {args.rounds} rounds; "
          f"emulator {os.path.realpath(EMULATOR)}.")
    print()
    print_table(results, concurrencies)


def measure(results: dict, flavor: str, c: int, round_number: int, row: dict) -> None:
    results[(flavor, c)].append(row)
    print(f"round {round_number}", flavor, c, row, file=sys.stderr)


def schedule_nmi(lab: Lab, running: bool) -> None:
    """NMI's DaemonSet on the node, or scheduled nowhere (its pod stops, as on uninstall)."""
    selector = None if running else "true"
    patch = {"spec": {"template": {"spec": {"nodeSelector": {"podid-bench/nowhere": selector}}}}}
    lab.kubectl("patch", "daemonset", "nmi", "--type=merge", "-p", json.dumps(patch))
    if running:
        lab.kubectl("rollout", "status", "daemonset/nmi", "--timeout=120s")


# Each run's name in the table, in the table's order; the first two have no NMI in the way.
PATHS = {"pods direct": "no NMI, from the pods", "direct": "no NMI, from the node's namespace",
         "podid": "podid's NMI", "podid, no guard": "podid's NMI, port guard off",
         "upstream": "upstream's NMI"}
BASELINES = ("pods direct", "direct")


def print_table(results: dict, concurrencies: list[int]) -> None:
    """One row per path and concurrency: each value the median of the rounds (the peak RSS their
    highest, the errors their sum); what a path adds at p99 is the median of its rounds' p99
    minus the baseline's p99 of the same round, with the lowest and highest of them."""
    print("| path | concurrency | pods sending | tokens/s | p50 ms | p99 ms | adds at p99 ms (vs pods direct)"
          " | adds at p99 ms (vs node direct) | NMI CPU µs/req | generator CPU µs/req | cores busy %"
          " | NMI VmHWM MiB | errors |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for flavor, label in PATHS.items():
        for c in concurrencies:
            rows = results[(flavor, c)]

            def med(key: str) -> float:
                return statistics.median(r[key] for r in rows)

            behind_nmi = flavor not in BASELINES
            added = [spread([r["p99"] - b["p99"] for r, b in zip(rows, results[(base, c)])])
                     if behind_nmi else "" for base in BASELINES]
            cells = [label, c, rows[0]["pods"], f"{med('rate'):,.0f}", f"{med('p50'):.2f}", f"{med('p99'):.2f}",
                     *added, f"{med('cpu_us'):.0f}" if behind_nmi else "", f"{med('gen_us'):.0f}",
                     f"{med('busy'):.0f}", f"{max(r['hwm'] for r in rows):.1f}" if behind_nmi else "",
                     sum(r["errors"] for r in rows)]
            print("| " + " | ".join(str(cell) for cell in cells) + " |")


def spread(values: list[float]) -> str:
    """The median, and the range when there is more than one value: `+0.12 (-0.30 to +0.80)`."""
    median = f"{statistics.median(values):+.2f}"
    return median if len(values) == 1 else f"{median} ({min(values):+.2f} to {max(values):+.2f})"


if __name__ == "__main__":
    main()
