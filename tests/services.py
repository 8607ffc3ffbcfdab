"""Real services for the scale-out tests, on loopback: Debian's `redis-server` and `nginx`,
and `llm-gateway serve` processes. Each is started on a free port, waited for with a bound,
and stopped (SIGTERM, then SIGKILL) when the test is done.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import httpx
import pytest

CLI = str(Path(sys.executable).with_name("llm-gateway"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(check: Callable[[], bool], *, timeout: float, what: str, every: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def stop_process(process: subprocess.Popen[bytes], *, timeout: float = 10) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def need(program: str) -> str:
    path = shutil.which(program) or (f"/usr/sbin/{program}" if program == "nginx" else None)
    if path is None or not Path(path).exists():
        pytest.fail(f"{program} is not installed (apt-get install {program}-server / {program})")
    return path


class RedisServer:
    """`redis-server` without persistence on a free port; `stop()`/`start()` keep the port."""

    def __init__(self, folder: Path) -> None:
        self.binary = need("redis-server")
        self.folder = folder
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.folder),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: _listening(self.port), timeout=10, what="redis-server")

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            self.process = None

    def pause(self) -> None:
        """Stop answering without closing connections (SIGSTOP): calls must time out."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def flush(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            sock.sendall(b"FLUSHALL\r\n")
            assert sock.recv(64).startswith(b"+OK")


@contextlib.contextmanager
def gateway_process(
    env: Mapping[str, str], *, workers: int = 1, log: Path, port: int | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`llm-gateway serve` in a process of its own (run in `log`'s folder, so no `.env` of
    the developer's is read); yields its URL and the process. Its output goes to `log`."""
    port = port or free_port()
    with log.open("ab") as out:
        process = subprocess.Popen(
            [CLI, "serve", "--port", str(port), "--workers", str(workers)],
            env=dict(env),
            cwd=log.parent,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _healthy(url, process), timeout=30, what=f"the gateway at {url}")
        yield url, process
    finally:
        stop_process(process)


def _healthy(url: str, process: subprocess.Popen[bytes]) -> bool:
    if process.poll() is not None:
        raise AssertionError(f"the gateway exited with {process.returncode}")
    try:
        return httpx.get(url + "/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


_NGINX_CONF = """
worker_processes 1;
{user}
error_log {folder}/error.log warn;
pid {folder}/nginx.pid;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {folder}/body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
    upstream gateways {{
        {servers}
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://gateways;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_buffering off;
            proxy_connect_timeout 2s;
            proxy_read_timeout 30s;
            add_header X-Served-By $upstream_addr always;
        }}
    }}
}}
"""


@contextlib.contextmanager
def nginx_round_robin(backends: list[str], folder: Path) -> Iterator[str]:
    """nginx on a free port, round-robin over `backends` (`127.0.0.1:port`); yields its URL."""
    binary = need("nginx")
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = folder / "nginx.conf"
    conf.write_text(
        _NGINX_CONF.format(
            user="user root root;" if os.geteuid() == 0 else "",
            folder=folder,
            servers="\n        ".join(f"server {b} max_fails=0;" for b in backends),
            port=port,
        )
    )
    process = subprocess.Popen(
        [binary, "-p", str(folder), "-c", str(conf), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: _listening(port), timeout=10, what="nginx")
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(process)
