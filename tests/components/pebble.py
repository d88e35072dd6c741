"""Pebble + pebble-challtestsrv on free loopback ports, with throwaway TLS files (test harness)."""

from __future__ import annotations

import ipaddress
import json
import os
import random
import shutil
import socket
import ssl
import struct
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

PEBBLE = "/usr/bin/pebble"
CHALLTESTSRV = "/usr/bin/pebble-challtestsrv"


# Below Linux's ephemeral range (32768-60999): a port picked there can be taken at any moment
# as the local port of some outgoing connection, which then blocks a listener on it.
_PORTS = (20000, 32000)


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now, outside the ephemeral range."""
    for _ in range(200):
        port = random.randint(*_PORTS)
        if port_is_free(port):
            return port
    raise RuntimeError("no free TCP port on 127.0.0.1")


def free_udp_tcp_port() -> int:
    """A port free for both UDP and TCP (challtestsrv's DNS server binds both)."""
    for _ in range(50):
        port = free_port()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            try:
                u.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free UDP+TCP port on 127.0.0.1")


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Could a server listen on ``port`` now? (TIME_WAIT leftovers do not count.)"""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


@dataclass(frozen=True, kw_only=True)
class TLSFiles:
    """A throwaway CA and a localhost/127.0.0.1 leaf for Pebble's own HTTPS listener."""

    ca_pem: Path
    cert_pem: Path
    key_pem: Path


def make_tls_files(directory: Path) -> TLSFiles:
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "certman test TLS CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    files = TLSFiles(
        ca_pem=directory / "tls-ca.pem",
        cert_pem=directory / "tls-cert.pem",
        key_pem=directory / "tls-key.pem",
    )
    files.ca_pem.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.cert_pem.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    files.key_pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    files.key_pem.chmod(0o600)
    return files


@dataclass(frozen=True, kw_only=True)
class PebbleOptions:
    """What differs between Pebble runs: Pebble's config keys and its environment."""

    nonce_reject: int = 0  # PEBBLE_WFE_NONCEREJECT, percent of good nonces rejected
    always_valid: bool = False  # PEBBLE_VA_ALWAYS_VALID
    authz_reuse: int = 50  # PEBBLE_AUTHZREUSE, percent
    eab_keys: dict[str, str] = field(default_factory=dict)  # kid -> base64url HMAC key
    validity_seconds: int | None = None  # certificateValidityPeriod
    blocklist: tuple[str, ...] = ()  # domainBlocklist


class Pebble:
    """One Pebble and its challtestsrv (DNS for every name -> 127.0.0.1), started and stopped."""

    def __init__(self, workdir: Path, options: PebbleOptions | None = None) -> None:
        self.workdir = workdir
        self.options = options or PebbleOptions()
        workdir.mkdir(parents=True, exist_ok=True)
        self.tls = make_tls_files(workdir / "tls")
        self.port = free_port()
        self.management_port = free_port()
        self.http_port = free_port()  # where Pebble's VA fetches HTTP-01 tokens
        self.tls_port = free_port()
        self.dns_port = free_udp_tcp_port()
        self.challtestsrv_port = free_port()
        self.root_pem = b""
        self.intermediate_pem = b""
        self._pebble: subprocess.Popen[bytes] | None = None
        self._challtestsrv: subprocess.Popen[bytes] | None = None

    # --- addresses ------------------------------------------------------------------------

    @property
    def directory_url(self) -> str:
        return f"https://127.0.0.1:{self.port}/dir"

    @property
    def management_url(self) -> str:
        return f"https://127.0.0.1:{self.management_port}"

    @property
    def ca_bundle(self) -> Path:
        return self.tls.ca_pem

    @property
    def root_path(self) -> Path:
        return self.workdir / "root.pem"

    # --- process control ------------------------------------------------------------------

    def start(self) -> Pebble:
        if self._challtestsrv is None:
            self._start_challtestsrv()
        config = {
            "pebble": {
                "listenAddress": f"127.0.0.1:{self.port}",
                "managementListenAddress": f"127.0.0.1:{self.management_port}",
                "certificate": str(self.tls.cert_pem),
                "privateKey": str(self.tls.key_pem),
                "httpPort": self.http_port,
                "tlsPort": self.tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": bool(self.options.eab_keys),
                "externalAccountMACKeys": dict(self.options.eab_keys),
                "domainBlocklist": list(self.options.blocklist),
            }
        }
        if self.options.validity_seconds is not None:
            config["pebble"]["certificateValidityPeriod"] = self.options.validity_seconds
        config_path = self.workdir / "pebble-config.json"
        config_path.write_text(json.dumps(config, indent=2))
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PEBBLE_VA_NOSLEEP": "1",
            "PEBBLE_WFE_NONCEREJECT": str(self.options.nonce_reject),
            "PEBBLE_AUTHZREUSE": str(self.options.authz_reuse),
        }
        if self.options.always_valid:
            env["PEBBLE_VA_ALWAYS_VALID"] = "1"
        log = (self.workdir / "pebble.log").open("ab")
        self._pebble = subprocess.Popen(
            [PEBBLE, "-config", str(config_path), "-dnsserver", f"127.0.0.1:{self.dns_port}"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=self.workdir,
        )
        log.close()
        self._wait_ready(self.directory_url, self._pebble, "pebble")
        self.root_pem = self.management_get("/roots/0")
        self.intermediate_pem = self.management_get("/intermediates/0")
        self.root_path.write_bytes(self.root_pem)
        return self

    def stop(self) -> None:
        for proc in (self._pebble, self._challtestsrv):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self._pebble = None
        self._challtestsrv = None

    def restart_pebble(self) -> None:
        """Restart Pebble alone (it forgets every account and regenerates its roots)."""
        proc = self._pebble
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=5)
        deadline = time.monotonic() + 5
        while not port_is_free(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.start()

    def _start_challtestsrv(self) -> None:
        log = (self.workdir / "challtestsrv.log").open("ab")
        self._challtestsrv = subprocess.Popen(
            [
                CHALLTESTSRV,
                "-dns01",
                f"127.0.0.1:{self.dns_port}",
                "-management",
                f"127.0.0.1:{self.challtestsrv_port}",
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
                "-defaultIPv4",
                "127.0.0.1",
                "-defaultIPv6",
                "",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self._wait_ready(
            f"http://127.0.0.1:{self.challtestsrv_port}/", self._challtestsrv, "challtestsrv"
        )

    def _wait_ready(self, url: str, proc: subprocess.Popen[bytes], what: str) -> None:
        context = ssl.create_default_context(cafile=str(self.tls.ca_pem))
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                log = (self.workdir / f"{what}.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{what} exited with {proc.returncode}:\n{log}")
            try:
                with urllib.request.urlopen(url, timeout=1, context=context):
                    return
            except urllib.error.HTTPError:
                return  # it answers
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"{what} did not answer at {url} within 15 s")

    # --- management -----------------------------------------------------------------------

    def management_get(self, path: str) -> bytes:
        context = ssl.create_default_context(cafile=str(self.tls.ca_pem))
        with urllib.request.urlopen(self.management_url + path, timeout=5, context=context) as r:
            return bytes(r.read())

    def cert_status(self, serial: int) -> dict[str, object]:
        """Pebble's own view of a certificate: {"Status": "Valid"|"Revoked", ...}."""
        result = json.loads(self.management_get(f"/cert-status-by-serial/{serial:x}"))
        assert isinstance(result, dict)
        return result

    def challtestsrv(self, path: str, body: dict[str, str]) -> None:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.challtestsrv_port}{path}",
            data=json.dumps(body).encode(),
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=5):
            pass

    def txt_records(self, name: str) -> list[str]:
        """Ask challtestsrv's DNS server for the TXT records of ``name`` (a real DNS query)."""
        return query_txt(name, ("127.0.0.1", self.dns_port))

    def __enter__(self) -> Pebble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def query_txt(name: str, server: tuple[str, int]) -> list[str]:
    """A minimal RFC 1035 TXT query over UDP; returns the TXT strings found."""
    qid = int.from_bytes(os.urandom(2), "big")
    header = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    qname = b"".join(bytes([len(label)]) + label.encode() for label in name.rstrip(".").split("."))
    packet = header + qname + b"\x00" + struct.pack(">HH", 16, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(3)
        s.sendto(packet, server)
        data, _ = s.recvfrom(4096)
    _, _, qd, an, _, _ = struct.unpack(">HHHHHH", data[:12])
    offset = 12
    for _ in range(qd):
        offset = _skip_name(data, offset) + 4
    found = []
    for _ in range(an):
        offset = _skip_name(data, offset)
        rtype, _, _, rdlen = struct.unpack(">HHIH", data[offset : offset + 10])
        offset += 10
        rdata = data[offset : offset + rdlen]
        offset += rdlen
        if rtype == 16:
            i = 0
            while i < len(rdata):
                length = rdata[i]
                found.append(rdata[i + 1 : i + 1 + length].decode())
                i += 1 + length
    return found


def _skip_name(data: bytes, offset: int) -> int:
    while True:
        length = data[offset]
        if length == 0:
            return offset + 1
        if length & 0xC0 == 0xC0:
            return offset + 2
        offset += 1 + length


def pebble_available() -> bool:
    return bool(shutil.which(PEBBLE) and shutil.which(CHALLTESTSRV))
