"""DNS-01 (RFC 8555 section 8.4): an operator's hook command, or TXT records in a DNS zone."""

from __future__ import annotations

import logging
import os
import subprocess
from collections import defaultdict
from pathlib import Path

from certman.acme_client.solvers.contract import ChallengeRequest, DnsZone

from certman.errors import CertmanError, IssuanceError

log = logging.getLogger("certman.acme")


class ExecHookSolver:
    """Runs ``dns_hook`` once per record with CERTMAN_ACME_* in its environment.

    The hook must return only once the record is published (or fail with a non-zero exit).
    """

    kind = "dns-01"

    def __init__(self, *, hook: Path, timeout: float, setting: str) -> None:
        self.hook = hook
        self.timeout = timeout
        self.setting = setting

    def perform(self, requests: list[ChallengeRequest]) -> None:
        for request in requests:
            self._run("set", request)

    def cleanup(self, requests: list[ChallengeRequest]) -> None:
        failures = []
        for request in requests:  # every record, even when one fails
            try:
                self._run("clear", request)
            except IssuanceError as e:
                failures.append(e.message)
        if failures:
            raise IssuanceError(" ".join(failures))

    def check(self) -> str:
        if not os.access(self.hook, os.X_OK):
            raise IssuanceError(f"The DNS hook {self.hook} is not executable ({self.setting}).")
        return f"DNS hook {self.hook} is executable"

    def _run(self, action: str, request: ChallengeRequest) -> None:
        env = dict(os.environ)
        env.update(
            CERTMAN_ACME_ACTION=action,
            CERTMAN_ACME_DOMAIN=request.domain,
            CERTMAN_ACME_TXT_NAME=request.txt_name.rstrip("."),
            CERTMAN_ACME_TXT_VALUE=request.txt_value,
        )
        try:
            done = subprocess.run(
                [str(self.hook)],
                env=env,
                capture_output=True,
                timeout=self.timeout,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            raise IssuanceError(
                f"The DNS hook {self.hook} did not finish {action} for {request.txt_name} within "
                f"{_seconds(self.timeout)} (propagation_timeout in {self.setting})."
            ) from None
        except OSError as e:
            raise IssuanceError(f"The DNS hook {self.hook} cannot run: {e.strerror}.") from None
        if done.returncode != 0:
            tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise IssuanceError(
                f"The DNS hook {self.hook} failed to {action} the TXT record "
                f"{request.txt_name} (exit {done.returncode}: {tail[0][:200]})."
            )


class DnsZoneSolver:
    """Publishes the TXT records in a DNS zone and waits until every change is served.

    Values already in a record set are kept: only certman's own values are added and
    removed (the zone does the read-modify-write).
    """

    kind = "dns-01"

    def __init__(self, *, zone: DnsZone, timeout: float) -> None:
        self.zone = zone
        self.timeout = timeout

    def perform(self, requests: list[ChallengeRequest]) -> None:
        changes = [self.zone.add_txt(name, values) for name, values in _by_name(requests).items()]
        for change in changes:
            if change is not None:
                self.zone.wait_for_change(change, self.timeout)

    def cleanup(self, requests: list[ChallengeRequest]) -> None:
        failures: list[str] = []
        for name, values in _by_name(requests).items():  # every name, even when one fails
            try:
                self.zone.remove_txt(name, values)
            except CertmanError as e:
                failures.append(e.message)
        if failures:
            raise IssuanceError(" ".join(failures))

    def check(self) -> str:
        return self.zone.check()


def _seconds(value: float) -> str:
    """``120 s``, ``0.5 s``: never "0 s" for a timeout under a second."""
    return f"{value:g} s"


def _by_name(requests: list[ChallengeRequest]) -> dict[str, list[str]]:
    """Wildcard and apex share one name (_acme-challenge.example.com) with two values."""
    grouped: dict[str, list[str]] = defaultdict(list)
    for request in requests:
        grouped[request.txt_name.rstrip(".").lower()].append(request.txt_value)
    return dict(grouped)
