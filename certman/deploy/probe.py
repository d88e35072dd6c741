"""TLS probes: does the server at host:port now hand out the certificate we deployed?"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from certman.deploy.settings import seconds
from certman.domains import is_ip_address
from certman.errors import ConfigError, DeployError

# How long every handshake must keep seeing the new serial before a rollout counts as
# verified. nginx keeps its old workers accepting connections for ~100 ms after a reload
# (longer on a loaded machine), a load balancer's nodes switch one by one: a streak shorter
# than that overlap proves nothing.
DEFAULT_SETTLE = "1s"


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


@dataclass(frozen=True, kw_only=True)
class Probe:
    """A target's `probe`, `probe_timeout` and `probe_settle` settings, and the checks on them."""

    endpoint: Endpoint
    timeout: float
    settle: float
    target: str

    @classmethod
    def from_settings(
        cls, settings: Mapping[str, Any], where: str, *, default_timeout: str
    ) -> Probe | None:
        if not settings.get("probe"):
            return None
        timeout = seconds(settings, "probe_timeout", default_timeout, where)
        settle = seconds(settings, "probe_settle", DEFAULT_SETTLE, where, allow_zero=True)
        if settle >= timeout:
            raise ConfigError(
                f"probe_settle ({settle:g}s) in {where} must be shorter than probe_timeout "
                f"({timeout:g}s), or no probe could ever succeed."
            )
        return cls(
            endpoint=Endpoint.parse(str(settings["probe"]), where=where),
            timeout=timeout,
            settle=settle,
            target=str(settings["name"]),
        )

    def require_answer(self, server_name: str | None) -> None:
        """One handshake attempt, before anything is switched: refuse when nothing answers.

        A failed operation, not bad input: a server that is down looks the same as a probe
        set to the wrong address, and the attempt is audited and alerted like any failed
        rollout. Retryable, so the renewal service backs off and tries again rather than
        giving the certificate up while the server is down.
        """
        try:
            served_serial(self.endpoint, server_name, timeout=min(5.0, self.timeout))
        except (OSError, ssl.SSLError) as e:
            raise DeployError(
                f"Nothing answers TLS at {self.endpoint}, the probe of target {self.target!r} "
                f"({e}); start the server or fix probe. Nothing was switched.",
                retryable=True,
            ) from None

    def sees(self, certificate_pem: bytes) -> tuple[bool, str]:
        """Whether the endpoint settles on this certificate's serial within the timeout.

        Returns (ok, a clause saying what was seen).
        """
        from certman.pki import certificate_facts

        serial = certificate_facts(certificate_pem).serial
        ok, seen = wait_for_serial(
            self.endpoint,
            server_name_of(certificate_pem),
            serial,
            timeout=self.timeout,
            settle=self.settle,
        )
        if ok:
            return True, f"{self.endpoint} serves serial {serial}"
        return False, (
            f"{self.endpoint} did not serve the new serial {serial} on every handshake for "
            f"{self.settle:g}s within {self.timeout:g}s (last seen: {seen})"
        )


def server_name_of(certificate_pem: bytes) -> str | None:
    """The SNI a probe sends: the certificate's first DNS name (a wildcard's base name)."""
    from cryptography import x509

    from certman.pki import load_certificate

    try:
        san = (
            load_certificate(certificate_pem)
            .extensions.get_extension_for_class(x509.SubjectAlternativeName)
            .value
        )
    except x509.ExtensionNotFound:
        return None
    names = san.get_values_for_type(x509.DNSName)
    return names[0].removeprefix("*.") if names else None


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
    settle: float = 1.0,
    interval: float = 0.2,
    confirmations: int = 3,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[bool, str]:
    """Poll until every handshake for ``settle`` seconds (and at least ``confirmations`` in
    a row) presents ``expected_serial``, or ``timeout`` passes.

    Reloads are not atomic: after an nginx SIGHUP the old workers keep accepting
    connections for a while, and a load balancer's nodes switch one by one, so the new
    serial shows up on some handshakes before it shows up on all of them. Probes are
    spaced by ``interval`` (back-to-back handshakes would all fall inside that overlap),
    and any other answer starts the streak again. Returns (ok, what was last seen or the
    last error).
    """
    deadline = clock() + timeout
    last = "no handshake yet"
    streak = 0
    streak_since = 0.0
    while True:
        started = clock()
        try:
            seen = served_serial(endpoint, server_name, timeout=min(5.0, max(timeout, 0.5)))
            if seen == expected_serial:
                streak_since = started if streak == 0 else streak_since
                streak += 1
                if streak >= confirmations and started - streak_since >= settle:
                    return True, seen
                last = f"the new serial, for only {started - streak_since:.1f}s in a row"
            else:
                streak = 0
                last = f"serial {seen}"
        except (OSError, ssl.SSLError) as e:
            streak = 0
            last = f"no TLS handshake ({e})"
        if clock() >= deadline:
            return False, last
        sleep(interval)
