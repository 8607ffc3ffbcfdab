"""The processes the harness starts, and what it reads about them from /proc.

Every server is its own process on a loopback port, started in its own session so that the
harness (and only the harness) can stop it and anything it spawned by its process-group id.
On Linux each child also gets SIGTERM if the harness dies without cleaning up (PDEATHSIG).
"""

from __future__ import annotations

import contextlib
import ctypes
import http.client
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

HOST = "127.0.0.1"
# Other processes using more than this many cores during a measurement make it suspect.
BUSY_CORES = 0.2
_CLK_TCK = os.sysconf("SC_CLK_TCK")
_PR_SET_PDEATHSIG = 1


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: a harness killed with SIGKILL leaves no servers.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _preexec(cpus: Collection[int] | None) -> Callable[[], None] | None:
    """What a child runs before exec: the death signal, and its cores when `cpus` is given (set
    before exec, so every thread and process it starts inherits them)."""
    if sys.platform != "linux":
        return None
    if cpus is None:
        return _die_with_parent
    pinned = set(cpus)

    def setup() -> None:
        _die_with_parent()
        os.sched_setaffinity(0, pinned)

    return setup


def http_status(port: int, path: str, headers: dict[str, str] | None = None) -> int | None:
    """Status of one GET on loopback, or None when nothing answers yet."""
    conn = http.client.HTTPConnection(HOST, port, timeout=2)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        response.read()
        return response.status
    except OSError:
        return None
    finally:
        conn.close()


@dataclass
class Service:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    startup_s: float | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid


class StartError(RuntimeError):
    """A server did not come up; the message names it and points at its log."""


@dataclass
class Stack:
    """Starts servers and always stops them (use as a context manager)."""

    log_dir: Path
    services: list[Service] = field(default_factory=list)
    helpers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def __enter__(self) -> Stack:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_all()

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        port: int,
        health_path: str,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        timeout: float = 30.0,
        health_headers: dict[str, str] | None = None,
        cpus: Collection[int] | None = None,
    ) -> Service:
        """Start a server and wait for its first 200 on `health_path`; `startup_s` is the time
        from just before the process is spawned to that 200 (polled every 10 ms). `cpus` pins
        it (and all it starts) to those cores."""
        log = self.log_dir / f"{name}.log"
        with log.open("wb") as out:
            started = time.perf_counter()
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
                start_new_session=True,
                preexec_fn=_preexec(cpus),
            )
        service = Service(name, proc, port, log)
        self.services.append(service)
        deadline = started + timeout
        while time.perf_counter() < deadline:
            if proc.poll() is not None:
                raise StartError(f"{name} exited with code {proc.returncode}; see {log}")
            if http_status(port, health_path, health_headers) == 200:
                service.startup_s = time.perf_counter() - started
                return service
            time.sleep(0.01)
        raise StartError(f"{name} did not answer 200 on {health_path} within {timeout:g}s; {log}")

    def spawn_helper(
        self, argv: Sequence[str], log: Path, *, cpus: Collection[int] | None = None
    ) -> subprocess.Popen[bytes]:
        """A short-lived helper (load generator, profiler) that is killed on the way out;
        `cpus` pins it to those cores."""
        with log.open("wb") as out:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=_preexec(cpus),
            )
        self.helpers.append(proc)
        return proc

    def stop(self, service: Service) -> None:
        _terminate(service.proc, group=True)
        if service in self.services:
            self.services.remove(service)

    def stop_all(self) -> None:
        for proc in self.helpers:
            _terminate(proc, group=False)
        self.helpers.clear()
        for service in reversed(self.services):
            _terminate(service.proc, group=True)
        self.services.clear()


def _terminate(proc: subprocess.Popen[bytes], *, group: bool) -> None:
    """SIGTERM, up to 10 s for a graceful exit, then SIGKILL: by this process's own id (or the
    process group it leads, which holds only what it spawned)."""
    if proc.poll() is not None:
        return

    def signal_it(sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            if group:
                os.killpg(proc.pid, sig)
            else:
                proc.send_signal(sig)

    signal_it(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        signal_it(signal.SIGKILL)
        proc.wait(timeout=10)


def rss_mb(pid: int) -> float | None:
    """VmRSS of one process in MB (10^6 bytes), None if it is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024 / 1e6
    except OSError:
        return None
    return None


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            text = stat.read()
    except OSError:
        return None
    # The command name may contain spaces and parentheses; the fields start after the last ")".
    return text[text.rfind(")") + 2 :].split()


def _all_parents() -> dict[int, int]:
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat_fields(int(entry))) is not None:
            parents[int(entry)] = int(fields[1])
    return parents


def descendants(root: int) -> list[int]:
    parents = _all_parents()
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    found: list[int] = []
    stack = list(children.get(root, ()))
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack.extend(children.get(pid, ()))
    return found


def _tree_ticks(root: int, *, with_reaped: bool) -> int:
    """Clock ticks of CPU (utime + stime, and with `with_reaped` the reaped children's too)
    used so far by a process and everything it spawned."""
    end = 15 if with_reaped else 13
    total = 0
    for pid in (root, *descendants(root)):
        fields = _stat_fields(pid)
        if fields is not None:
            total += sum(int(v) for v in fields[11:end])
    return total


def tree_cpu_s(pid: int) -> float:
    """CPU time (user + system) used so far by a process and everything it spawned."""
    return _tree_ticks(pid, with_reaped=False) / _CLK_TCK


def tree_rss_mb(pid: int) -> float | None:
    """RSS of a process plus everything it spawned (LiteLLM may start helpers)."""
    own = rss_mb(pid)
    if own is None:
        return None
    return own + sum(rss_mb(child) or 0.0 for child in descendants(pid))


@dataclass(frozen=True)
class CpuSample:
    """CPU time used by the whole machine and by this harness's process tree, in seconds."""

    wall: float
    machine_busy: float
    ours: float


def cpu_sample() -> CpuSample:
    with open("/proc/stat", encoding="ascii") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal. Busy = user + nice + system + steal:
    # interrupt time is left out because under load it is mostly our own loopback traffic,
    # which the kernel does not charge to any process; steal (another VM on the host) stays in.
    busy = values[0] + values[1] + values[2] + values[7]
    # utime + stime + cutime + cstime: children already reaped (wrk runs, generators) are in the
    # c* fields, so a process that ended between two samples is still counted.
    ours = _tree_ticks(os.getpid(), with_reaped=True)
    return CpuSample(time.monotonic(), busy / _CLK_TCK, ours / _CLK_TCK)


def foreign_cores(before: CpuSample, after: CpuSample) -> float:
    """Average number of cores used by processes that are not ours between two samples: the
    other work on the machine that perturbs a measurement."""
    wall = after.wall - before.wall
    if wall <= 0:
        return 0.0
    foreign = (after.machine_busy - before.machine_busy) - (after.ours - before.ours)
    return max(0.0, foreign / wall)


# The machine's own speed. This class of VM runs the same code two to four times slower at
# times, and neither other processes' CPU nor the steal count in /proc/stat shows it (the host's
# other tenants do not appear there): only timing fixed work does.
PROBE_STEPS = 500_000


def speed_probe_ms() -> float:
    """Milliseconds a plain Python loop of PROBE_STEPS takes (the better of two tries), run
    while the servers are idle: higher means a slower machine."""
    best = float("inf")
    for _ in range(2):
        started = time.perf_counter()
        i = 0
        while i < PROBE_STEPS:
            i += 1
        best = min(best, time.perf_counter() - started)
    return round(best * 1000, 2)


class NoiseMeter:
    """How many cores other processes used while the `with` block ran (`cores`), and how fast
    the machine itself was around it (`probe_ms`: the speed probe before and after, averaged)."""

    def __init__(self) -> None:
        self._before: CpuSample | None = None
        self._probe_before = 0.0
        self.cores = 0.0
        self.probe_ms = 0.0

    def __enter__(self) -> NoiseMeter:
        self._probe_before = speed_probe_ms()
        self._before = cpu_sample()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._before is not None, "NoiseMeter is used as a context manager"
        self.cores = round(foreign_cores(self._before, cpu_sample()), 3)
        self.probe_ms = round((self._probe_before + speed_probe_ms()) / 2, 2)


class PeakRss:
    """The most RSS a process tree used while the `with` block ran, sampled from a thread
    every `interval` s (the block is the harness waiting on load generators): `peak_mb`."""

    def __init__(self, pid: int, *, interval: float = 0.2) -> None:
        self._pid = pid
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name=f"rss-{pid}", daemon=True)
        self.peak_mb: float | None = None

    def _sample(self) -> None:
        while True:
            value = tree_rss_mb(self._pid)
            if value is not None and (self.peak_mb is None or value > self.peak_mb):
                self.peak_mb = value
            if self._stop.wait(self._interval):
                return

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()


def raise_fd_limit() -> int:
    """Raise this process's open-file limit to the hard limit (children inherit it): thousands
    of streams need a descriptor each in the generator, and two in a proxy. The new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # RLIM_INFINITY (-1 here) still cannot go past the kernel's nr_open, 2^20 by default.
    wanted = 1 << 20 if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and wanted > soft:
        with contextlib.suppress(ValueError, OSError):  # not allowed here: keep what we have
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def context_switches(pid: int) -> int:
    """Voluntary + involuntary context switches of all of a process's threads so far."""
    total = 0
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/status") as status:
                total += sum(int(x.split()[1]) for x in status if "ctxt_switches" in x)
    return total
