"""A real nginx on a free loopback port, serving TLS from files the test controls."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_placeholder(cert_path: Path, key_path: Path, name: str = "placeholder.test") -> int:
    """A self-signed certificate so nginx can start before certman deploys; returns its serial."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
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
worker_processes 1;
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

    def stop(self) -> None:
        subprocess.run(
            [NGINX, "-p", str(self.prefix), "-c", str(self.conf), "-s", "stop"],
            check=False,
            capture_output=True,
        )

    def error_log(self) -> str:
        log = self.prefix / "error.log"
        return log.read_text() if log.exists() else ""
