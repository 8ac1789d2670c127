"""Operator burst benchmark (issue 9, item 4): how fast the real operator reconciles a burst of TrainingJobs.

Everything is real except the control plane: the API emulator of tests/support (started exactly as the tests start
it, in this process), the real `modelyard operator` process (kopf), and the real kubernetes client creating
TrainingJobs concurrently. The same workload runs twice, each time against a fresh emulator:
- emulator alone (no operator): a TrainingJob is done when its ADDED event comes back on a watch. This is the
  emulator's raw create rate and the floor of any reaction time;
- with the operator: a TrainingJob is done when its status has `phase` and `jobName` (the operator writes jobName
  only after it has created the Job and read it back), as seen on a watch.
The workload is a burst of N creates with bounded concurrency, then (once the burst is done and nothing has been
written to the API for 2 s) single creates at a fixed rate: the steady state. For each run the table gives the
time until the burst is done and until the last write it caused, latency from sending a create to seeing the awaited
state (p50/p99), the CPU time of the emulator (this process) and of the operator, and the operator's peak memory
(VmHWM, the kernel's high-water mark of its RSS), with the ratio of the operator's figures to the emulator's.
Targets: a burst of 1,000 done in <= 60 s, steady p99 <= 500 ms, peak RSS <= 300 MB.

    python bench/operator_burst.py                    # N=1000, concurrency 16, then 150 creates at 5/s
    python bench/operator_burst.py --quick            # N=50, then 20: a smoke run
    python bench/operator_burst.py -n 500 --steady-rate 10 --json figures.json
    python bench/operator_burst.py --operator-env MODELYARD_MANAGE_TRAINER_RBAC=false   # compare a setting
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, cast

# `python bench/operator_burst.py` puts bench/ on the path, not the repository that holds tests/support.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import kubernetes

from tests.conftest import install_crds
from tests.support.clients import GROUP, VERSION, CustomObjects, minimal_training_job
from tests.support.emulator import RunningEmulator, serve_in_thread
from tests.support.operator_process import run_operator

NAMESPACE = "default"
PLURAL = "trainingjobs"
TARGET_BURST_SECONDS = 60.0
QUIET_SECONDS = 2.0
TARGET_STEADY_P99_SECONDS = 0.5
TARGET_PEAK_RSS_BYTES = 300 * 2**20


@dataclass(frozen=True)
class Config:
    count: int = 1000
    concurrency: int = 16
    steady_count: int = 150
    steady_rate: float = 5.0
    timeout: float = 300.0
    operator_env: tuple[tuple[str, str], ...] = ()  # extra MODELYARD_* settings, to compare them


@dataclass
class Latencies:
    """Seconds from a create being sent to its awaited state arriving on a watch."""

    samples: list[float] = field(default_factory=list)

    def quantile(self, q: float) -> float:
        """Nearest rank: the smallest sample with at least a fraction q of them at or below it."""
        ordered = sorted(self.samples)
        if not ordered:
            return float("nan")
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)]

    def summary(self) -> dict[str, float]:
        return {"p50": self.quantile(0.5), "p99": self.quantile(0.99), "max": self.quantile(1.0)}


@dataclass
class PhaseFigures:
    """One run of the workload: a burst of creates, then single creates at a fixed rate."""

    count: int
    submit_seconds: float  # until every create of the burst was answered
    burst_seconds: float  # until every object of the burst had arrived in the awaited state
    quiet_seconds: float  # until the last write the burst caused (then nothing for QUIET_SECONDS)
    harness_cpu_seconds: float  # CPU time of this process (the emulator, the clients) until then
    operator_cpu_seconds: float  # CPU time of the operator until then (0 without one)
    burst_arrived: int
    burst_latency: dict[str, float]
    steady_count: int
    steady_arrived: int
    steady_latency: dict[str, float]

    @property
    def complete(self) -> bool:
        return self.burst_arrived == self.count and self.steady_arrived == self.steady_count


@dataclass
class OperatorFigures:
    phase: PhaseFigures
    peak_rss_bytes: int
    cpu_seconds: float


class Arrivals:
    """Watches TrainingJobs and notes when each first reaches `done(obj)`; thread-safe."""

    def __init__(self, api: kubernetes.client.ApiClient, done: Callable[[dict[str, Any]], bool]) -> None:
        self._objects = CustomObjects(api, PLURAL)
        self._done = done
        self._condition = threading.Condition()
        self._stop = threading.Event()
        self.sent: dict[str, float] = {}
        self.arrived: dict[str, float] = {}
        listed = self._objects.api.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL)
        self._version: str = cast(dict[str, Any], listed)["metadata"]["resourceVersion"]
        self._thread = threading.Thread(target=self._watch, name="arrivals", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.is_set():
            # Short watches resumed from the last version: stopping never waits long, no event is lost.
            stream = kubernetes.watch.Watch().stream(  # type: ignore[no-untyped-call]
                self._objects.api.list_namespaced_custom_object, GROUP, VERSION, NAMESPACE, PLURAL,
                resource_version=self._version, timeout_seconds=2,
            )  # fmt: skip
            for event in stream:
                seen = time.monotonic()
                obj = event["object"]
                self._version = obj["metadata"]["resourceVersion"]
                name = obj["metadata"]["name"]
                if event["type"] != "DELETED" and name not in self.arrived and self._done(obj):
                    with self._condition:
                        self.arrived[name] = seen
                        self._condition.notify_all()

    def create(self, body: dict[str, Any]) -> None:
        self.sent[body["metadata"]["name"]] = time.monotonic()
        self._objects.create(NAMESPACE, body)

    def wait(self, names: list[str], timeout: float) -> bool:
        with self._condition:
            return self._condition.wait_for(lambda: all(n in self.arrived for n in names), timeout)

    def latencies(self, names: list[str]) -> Latencies:
        return Latencies([self.arrived[n] - self.sent[n] for n in names if n in self.arrived])

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def client_for(running: RunningEmulator, concurrency: int) -> kubernetes.client.ApiClient:
    """A client whose connection pool holds one connection per worker (the default keeps 5 per CPU)."""
    configuration = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(str(running.kubeconfig), client_configuration=configuration)  # type: ignore[no-untyped-call]
    configuration.connection_pool_maxsize = concurrency + 4
    return kubernetes.client.ApiClient(configuration)


def create_all(arrivals: Arrivals, names: list[str], concurrency: int) -> float:
    """Create the TrainingJobs with `concurrency` requests in flight; the seconds it took."""
    started = time.monotonic()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(lambda name: arrivals.create(minimal_training_job(name)), names))
    return time.monotonic() - started


def settle(running: RunningEmulator, timeout: float) -> float:
    """Wait until nothing has been written to the API for QUIET_SECONDS: whoever reacts to the burst (kopf's own
    patches, the last status writes) has finished. The seconds until the last write."""
    started = time.monotonic()
    store = running.emulator.api.store
    revision, changed = store.revision, started
    while time.monotonic() - changed < QUIET_SECONDS and time.monotonic() - started < timeout:
        time.sleep(0.05)
        if store.revision != revision:
            revision, changed = store.revision, time.monotonic()
    return changed - started


@contextmanager
def frozen_heap() -> Iterator[None]:
    """The emulator runs in this process and keeps every request and every object version (kmock's log): full
    collections of that ever-growing heap stalled it for up to 2 s. Freeze what exists at the start of each phase,
    so collections look only at what the phase allocates (a real API server has no such pauses); thaw it after."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def run_workload(
    running: RunningEmulator,
    arrivals: Arrivals,
    config: Config,
    prefix: str,
    operator_cpu: Callable[[], float] = lambda: 0.0,
) -> PhaseFigures:
    """The burst; once it has arrived and the API has gone quiet, single creates on a fixed schedule, none waiting
    for another."""
    burst = [f"{prefix}-burst-{i:05d}" for i in range(config.count)]
    steady = [f"{prefix}-steady-{i:05d}" for i in range(config.steady_count)]
    with frozen_heap():
        started, cpu_before, operator_before = time.monotonic(), time.process_time(), operator_cpu()
        submit_seconds = create_all(arrivals, burst, config.concurrency)
        arrivals.wait(burst, config.timeout)
        done = [arrivals.arrived[n] for n in burst if n in arrivals.arrived]
        burst_seconds = (max(done) if len(done) == len(burst) else time.monotonic()) - started
        quiet_after = time.monotonic() - started + settle(running, config.timeout)
        harness_cpu, burst_operator_cpu = time.process_time() - cpu_before, operator_cpu() - operator_before
    with frozen_heap():
        interval = 1.0 / config.steady_rate
        first = time.monotonic() + interval
        with ThreadPoolExecutor(4) as pool:
            for index, name in enumerate(steady):
                time.sleep(max(0.0, first + index * interval - time.monotonic()))
                pool.submit(arrivals.create, minimal_training_job(name))
        arrivals.wait(steady, config.timeout)
    return PhaseFigures(
        count=config.count,
        submit_seconds=submit_seconds,
        burst_seconds=burst_seconds,
        quiet_seconds=quiet_after,
        harness_cpu_seconds=harness_cpu,
        operator_cpu_seconds=burst_operator_cpu,
        burst_arrived=len(done),
        burst_latency=arrivals.latencies(burst).summary(),
        steady_count=config.steady_count,
        steady_arrived=sum(n in arrivals.arrived for n in steady),
        steady_latency=arrivals.latencies(steady).summary(),
    )


def measure_raw(config: Config, workdir: Path) -> PhaseFigures:
    """The emulator alone, no operator: an object counts once its creation is back on a watch (ADDED)."""
    with serve_in_thread(workdir / "raw-kubeconfig.yaml") as running:
        api = client_for(running, config.concurrency)
        install_crds(api)
        arrivals = Arrivals(api, lambda _: True)
        try:
            return run_workload(running, arrivals, config, "raw")
        finally:
            arrivals.close()
            api.close()  # type: ignore[no-untyped-call]


def reconciled(obj: dict[str, Any]) -> bool:
    """The operator has created the Job and written a status naming it."""
    status = obj.get("status") or {}
    return bool(status.get("phase") and status.get("jobName"))


def operator_command() -> list[str]:
    return [sys.executable, "-m", "modelyard.cli", "operator", "--namespace", NAMESPACE, "--standalone"]


def measure_operator(running: RunningEmulator, config: Config, log_path: Path) -> OperatorFigures:
    """The same workload against `running` (CRDs installed) with the real operator process, until reconciled."""
    # No ports to collide on with whatever else runs on the machine.
    environment = {"MODELYARD_METRICS_PORT": "0", "MODELYARD_HEALTH_PORT": "0", **dict(config.operator_env)}
    api = client_for(running, config.concurrency)
    with run_operator(running, operator_command(), log_path, env=environment, watching=[PLURAL, "jobs"]) as operator:
        arrivals = Arrivals(api, reconciled)
        try:
            phase = run_workload(running, arrivals, config, "tj", lambda: process_figures(operator.process.pid)[1])
            peak_rss, cpu_seconds = process_figures(operator.process.pid)
        finally:
            arrivals.close()
            api.close()  # type: ignore[no-untyped-call]
        if not operator.running:
            raise RuntimeError(f"the operator exited during the benchmark:\n{operator.logs[-5000:]}")
    return OperatorFigures(phase, peak_rss, cpu_seconds)


def process_figures(pid: int) -> tuple[int, float]:
    """Peak resident memory (bytes) and CPU time (s) of a live process, from /proc (Linux)."""
    status = Path(f"/proc/{pid}/status").read_text()
    peak_kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
    # Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    ticks = int(fields[11]) + int(fields[12])
    return peak_kib * 1024, ticks / os.sysconf("SC_CLK_TCK")


def machine() -> dict[str, Any]:
    """What the figures depend on: the machine is shared, so its load average is part of the result."""
    return {
        "cpus": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "platform": platform.platform(),
        "python": platform.python_version(),
        **{package: metadata.version(package) for package in ("kopf", "kubernetes", "kmock")},
    }


def verdict(ok: bool) -> str:
    return "yes" if ok else "MISSED"


def report(
    config: Config, raw: PhaseFigures, op: OperatorFigures, before: dict[str, Any], after: dict[str, Any]
) -> str:
    """The table: each operator figure beside the emulator's own figure for the same workload, and their ratio."""
    ms = 1000.0
    run = op.phase
    raw_rate, op_rate = raw.count / raw.submit_seconds, run.burst_arrived / run.burst_seconds
    rb, ob, rs, os_ = raw.burst_latency, run.burst_latency, raw.steady_latency, run.steady_latency
    total = run.count + run.steady_count
    rows = [
        (f"burst of {run.count}: rate", f"{raw_rate:.0f} created/s", f"{op_rate:.1f} reconciled/s", "",
         f"{op_rate / raw_rate:.3f}", ""),
        (f"burst of {run.count}: all done in", f"{raw.burst_seconds:.1f} s", f"{run.burst_seconds:.1f} s",
         f"<= {TARGET_BURST_SECONDS:.0f} s", f"{run.burst_seconds / raw.burst_seconds:.1f}x",
         verdict(run.burst_arrived == run.count and run.burst_seconds <= TARGET_BURST_SECONDS)),
        ("burst: creates answered in", f"{raw.submit_seconds:.1f} s", f"{run.submit_seconds:.1f} s", "",
         f"{run.submit_seconds / raw.submit_seconds:.1f}x", ""),
        ("burst: last write it caused", f"{raw.quiet_seconds:.1f} s", f"{run.quiet_seconds:.1f} s", "",
         f"{run.quiet_seconds / raw.quiet_seconds:.1f}x", ""),
        ("burst latency p50 / p99", f"{rb['p50']:.2f} / {rb['p99']:.2f} s", f"{ob['p50']:.2f} / {ob['p99']:.2f} s",
         "", f"{ob['p99'] / rb['p99']:.1f}x", ""),
        (f"steady {config.steady_rate:g}/s x {run.steady_count}: p50 / p99",
         f"{rs['p50'] * ms:.0f} / {rs['p99'] * ms:.0f} ms", f"{os_['p50'] * ms:.0f} / {os_['p99'] * ms:.0f} ms",
         f"p99 <= {TARGET_STEADY_P99_SECONDS * ms:.0f} ms", f"{os_['p99'] / rs['p99']:.1f}x",
         verdict(run.steady_arrived == run.steady_count and os_["p99"] <= TARGET_STEADY_P99_SECONDS)),
        ("operator peak RSS", "", f"{op.peak_rss_bytes / 2**20:.0f} MiB", f"<= {TARGET_PEAK_RSS_BYTES / 2**20:.0f} MiB",
         "", verdict(op.peak_rss_bytes <= TARGET_PEAK_RSS_BYTES)),
        ("CPU until quiet: emulator+clients", f"{raw.harness_cpu_seconds:.1f} s", f"{run.harness_cpu_seconds:.1f} s",
         "", f"{run.harness_cpu_seconds / raw.harness_cpu_seconds:.1f}x", ""),
        ("CPU until quiet: operator", "", f"{run.operator_cpu_seconds:.1f} s "
         f"({run.operator_cpu_seconds / run.count * ms:.0f} ms per object)", "", "", ""),
        ("operator CPU, whole run", "", f"{op.cpu_seconds:.1f} s", "", "", ""),
        ("arrived / reconciled", f"{raw.burst_arrived + raw.steady_arrived}/{total}",
         f"{run.burst_arrived + run.steady_arrived}/{total}", "all", "", verdict(raw.complete and run.complete)),
    ]  # fmt: skip
    header = ("measure", "emulator alone", "with the operator", "target", "ratio", "met")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        f"operator burst: N={config.count}, concurrency {config.concurrency}, then {config.steady_count} single "
        f"creates at {config.steady_rate:g}/s" + "".join(f"; {name}={value}" for name, value in config.operator_env),
        f"machine: {before['cpus']} CPUs ({before['platform']}), load average {before['load_average']} before, "
        f"{after['load_average']} after; Python {before['python']}, kopf {before['kopf']}, "
        f"kubernetes client {before['kubernetes']}, kmock {before['kmock']}",
        "emulator alone: an object is done when its ADDED event arrives on a watch; with the operator: when its status "
        "has phase and jobName; ratio: with the operator / emulator alone",
        "| " + " | ".join(h.ljust(widths[i]) for i, h in enumerate(header)) + " |",
        "|" + "|".join("-" * (width + 2) for width in widths) + "|",
    ]
    lines += ["| " + " | ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)) + " |" for row in rows]
    return "\n".join(lines)


def parse_arguments(argv: list[str] | None = None) -> tuple[Config, Path | None]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--count", type=int, default=Config.count, help="TrainingJobs in the burst")
    parser.add_argument("--concurrency", type=int, default=Config.concurrency, help="creates in flight at once")
    parser.add_argument("--steady-count", type=int, default=Config.steady_count, help="single creates after it")
    parser.add_argument("--steady-rate", type=float, default=Config.steady_rate, help="single creates per second")
    parser.add_argument("--timeout", type=float, default=Config.timeout, help="seconds to wait for each phase")
    parser.add_argument("--quick", action="store_true", help="a smoke run: N=50, 20 steady creates")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--operator-env", action="append", default=[], metavar="NAME=VALUE", help="a setting for the operator"
    )
    arguments = parser.parse_args(argv)
    settings = [tuple(item.split("=", 1)) for item in arguments.operator_env]
    if any(len(setting) != 2 or not setting[0] for setting in settings):
        parser.error("--operator-env takes NAME=VALUE")
    if arguments.quick:
        arguments.count, arguments.steady_count = 50, 20
    for name in ("count", "concurrency", "steady_count"):
        if getattr(arguments, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if arguments.steady_rate <= 0 or arguments.timeout <= 0:
        parser.error("--steady-rate and --timeout must be positive")
    config = Config(
        arguments.count,
        arguments.concurrency,
        arguments.steady_count,
        arguments.steady_rate,
        arguments.timeout,
        tuple((name, value) for name, value in settings),
    )
    return config, arguments.json


def main(argv: list[str] | None = None) -> int:
    config, json_path = parse_arguments(argv)
    before = machine()
    with tempfile.TemporaryDirectory(prefix="operator-burst-") as temporary:
        workdir = Path(temporary)
        raw = measure_raw(config, workdir)
        with serve_in_thread(workdir / "kubeconfig.yaml") as running:
            setup = client_for(running, 1)
            install_crds(setup)
            setup.close()  # type: ignore[no-untyped-call]
            figures = measure_operator(running, config, workdir / "operator.log")
            internal = list(running.emulator.internal_errors)
    after = machine()
    print(report(config, raw, figures, before, after))
    if internal:
        print(f"the emulator failed internally {len(internal)} times: {internal[:3]!r}", file=sys.stderr)
    if json_path is not None:
        document = {"config": asdict(config), "machine_before": before, "machine_after": after}
        document |= {"emulator_alone": asdict(raw), "operator": asdict(figures)}
        json_path.write_text(json.dumps(document, indent=2) + "\n")
    return 0 if raw.complete and figures.phase.complete and not internal else 1


if __name__ == "__main__":
    sys.exit(main())
