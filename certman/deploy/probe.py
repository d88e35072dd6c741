"""TLS probes: does the server at host:port now hand out the certificate we deployed?"""

from __future__ import annotations

import socket
import ssl
import time
from dataclasses import dataclass

from certman.domains import is_ip_address
from certman.errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class Endpoint:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str, *, where: str) -> Endpoint:
        host, sep, port = str(text).rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"probe {text!r} in {where} is not host:port (e.g. 127.0.0.1:443).")
        return cls(host=host.strip("[]"), port=int(port))

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def served_serial(endpoint: Endpoint, server_name: str | None, timeout: float = 5.0) -> str:
    """The serial (lowercase hex) of the leaf the server presents for ``server_name`` (SNI).

    Only the certificate is read; it is not validated here (verification of the chain is
    the issuer's business, the probe only asks "is the new one live?"). Raises OSError or
    ssl.SSLError when no handshake is possible.
    """
    from cryptography import x509

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection((endpoint.host, endpoint.port), timeout=timeout) as raw:
        sni = server_name if server_name and not is_ip_address(server_name) else None
        with context.wrap_socket(raw, server_hostname=sni) as tls:
            der = tls.getpeercert(binary_form=True)
    if not der:
        raise ssl.SSLError("the server presented no certificate")
    return format(x509.load_der_x509_certificate(der).serial_number, "x")


def wait_for_serial(
    endpoint: Endpoint,
    server_name: str | None,
    expected_serial: str,
    *,
    timeout: float,
    interval: float = 0.2,
    confirmations: int = 3,
) -> tuple[bool, str]:
    """Poll until the server presents ``expected_serial`` on ``confirmations`` handshakes in a
    row, or ``timeout`` passes.

    Reloads take a moment and are not atomic: after an nginx SIGHUP old workers still answer
    for a while, and a load balancer's nodes switch one by one. One lucky handshake proves
    little. Returns (ok, what was last seen or the last error).
    """
    deadline = time.monotonic() + timeout
    last = "no handshake yet"
    streak = 0
    while True:
        try:
            seen = served_serial(endpoint, server_name, timeout=min(5.0, max(timeout, 0.5)))
            streak = streak + 1 if seen == expected_serial else 0
            if streak >= confirmations:
                return True, seen
            last = f"serial {seen}"
        except (OSError, ssl.SSLError) as e:
            streak = 0
            last = f"no TLS handshake ({e})"
        if time.monotonic() >= deadline:
            return False, last
        if streak == 0:
            time.sleep(interval)
