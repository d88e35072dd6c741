"""A real nginx on a free loopback port, serving TLS from files the test controls."""

from __future__ import annotations

import platform
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from tests.selfsigned import self_signed

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


WORKER_PROCESSES = 1


def _children(parent: int) -> list[tuple[int, str]]:
    """(pid, process title) of each live child of ``parent``, from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except (FileNotFoundError, ProcessLookupError):
            continue  # exited meanwhile
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if int(ppid) == parent and state != "Z":
            found.append((int(entry.name), title))
    return found


def _status(pid: int) -> dict[str, str]:
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except FileNotFoundError:
        return {}
    return {k: v.strip() for k, _, v in (line.partition(":") for line in lines)}


def _signal_pending(pid: int) -> bool:
    status = _status(pid)
    return any(int(status.get(field, "0"), 16) for field in ("SigPnd", "ShdPnd"))


# rt_sigsuspend, for kernels that do not name the wait channel.
_SIGSUSPEND = {"x86_64": "130", "aarch64": "133"}.get(platform.machine(), "")


def _idle_in_sigsuspend(pid: int) -> bool:
    """The master waits for signals in sigsuspend between (re)configurations."""
    try:
        if "sigsuspend" in Path(f"/proc/{pid}/wchan").read_text():
            return True
        return Path(f"/proc/{pid}/syscall").read_text().split()[0] == _SIGSUSPEND
    except (FileNotFoundError, IndexError, PermissionError):
        return False


def start_nginx(directory: Path) -> Nginx:
    """An nginx in ``directory`` serving a placeholder from tls/fullchain.pem + tls/privkey.pem."""
    if not shutil.which("nginx") and not Path(NGINX).exists():
        raise RuntimeError("nginx is not installed; scripts/test.sh installs it")
    tls = directory / "tls"
    tls.mkdir(parents=True)
    server = Nginx(
        prefix=directory / "nginx",
        port=free_port(),
        fullchain=tls / "fullchain.pem",
        key=tls / "privkey.pem",
    )
    server.prefix.mkdir()
    write_placeholder(server.fullchain, server.key)
    server.start()
    return server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_placeholder(cert_path: Path, key_path: Path, name: str = "placeholder.test") -> int:
    """A self-signed certificate so nginx can start before certman deploys; returns its serial."""
    cert, key = self_signed(name, lifetime=timedelta(days=1), backdate=timedelta(hours=1))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key)
    key_path.chmod(0o600)
    return cert.serial_number


@dataclass
class Nginx:
    prefix: Path
    port: int
    fullchain: Path
    key: Path

    @property
    def conf(self) -> Path:
        return self.prefix / "nginx.conf"

    @property
    def reload_command(self) -> str:
        return f"{NGINX} -p {self.prefix} -c {self.conf} -s reload"

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self.conf.write_text(
            f"""
daemon on;
worker_processes {WORKER_PROCESSES};
pid {self.prefix}/nginx.pid;
error_log {self.prefix}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {self.prefix}/tmp;
    proxy_temp_path {self.prefix}/tmp;
    fastcgi_temp_path {self.prefix}/tmp;
    uwsgi_temp_path {self.prefix}/tmp;
    scgi_temp_path {self.prefix}/tmp;
    server {{
        listen 127.0.0.1:{self.port} ssl;
        ssl_certificate {self.fullchain};
        ssl_certificate_key {self.key};
        location / {{ return 200 "ok"; }}
    }}
}}
"""
        )
        (self.prefix / "tmp").mkdir(exist_ok=True)
        subprocess.run([NGINX, "-p", str(self.prefix), "-c", str(self.conf)], check=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"nginx did not listen on {self.port}: {self.error_log()}")

    @property
    def master_pid(self) -> int:
        return int((self.prefix / "nginx.pid").read_text().strip())

    def workers(self) -> set[int]:
        """The pids of the master's worker processes (old ones shutting down included)."""
        return {pid for pid, _ in _children(self.master_pid)}

    def wait_settled(self, timeout: float = 20.0) -> set[int]:
        """Wait until no reload is in progress; return the pids of the serving workers.

        `nginx -s reload` only sends SIGHUP: the master then loads the files, starts new
        workers, sleeps ~100 ms and only then tells the old ones to stop accepting, so for a
        while both generations answer. Settled means: no signal pending for the master or a
        worker, the master idle in sigsuspend, and exactly `worker_processes` workers, none
        shutting down. A signal that the reload command sent is pending until the master
        takes it, so a reload that has just been requested is never mistaken for settled.
        """
        deadline = time.monotonic() + timeout
        while True:
            master = self.master_pid
            children = _children(master)
            workers = {pid for pid, title in children if title == "nginx: worker process"}
            if (
                _idle_in_sigsuspend(master)
                and len(children) == WORKER_PROCESSES == len(workers)
                and not any(_signal_pending(pid) for pid in (master, *workers))
            ):
                return workers
            if time.monotonic() > deadline:
                raise RuntimeError(f"nginx did not settle within {timeout}s: {children}")
            time.sleep(0.02)

    def stop(self) -> None:
        subprocess.run(
            [NGINX, "-p", str(self.prefix), "-c", str(self.conf), "-s", "stop"],
            check=False,
            capture_output=True,
        )

    def error_log(self) -> str:
        log = self.prefix / "error.log"
        return log.read_text() if log.exists() else ""
