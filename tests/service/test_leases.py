"""Leases held by processes that stopped, and what each process reports it did."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from certman.service.leases import Lease, claim, holder_gone, holder_of, instance_id
from tests.service.test_concurrent_commands import REPO, Home, new_home

# Leases "web" as a command would, says so, then waits to be killed.
HOLD = """
import sys, time
from pathlib import Path
from certman.config import load_config
from certman.service.leases import claim, lease_for
from certman.service.runtime import Runtime

home = Path(sys.argv[1])
rt = Runtime(config=load_config(home, home / "certman.toml"))
assert claim(rt, "web", lease_for(rt, "cli"))
print("held", flush=True)
time.sleep(120)
"""


def holding(home: Home) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(home.path)],
        cwd=REPO,
        env=home.env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stdout.readline() == "held\n"
    return process


def test_a_lease_of_a_killed_process_is_taken_over_at_once(tmp_path: Path) -> None:
    home = new_home(tmp_path)
    home.ok("issue", "web", "-d", "web.example.com")
    process = holding(home)
    try:
        busy = home.run("renew", "web", "--force")
        assert busy.returncode == 1 and "being worked on by cli:" in busy.stderr
        doctor = home.ok("doctor")
        assert re.search(r"leases +web: being worked on by cli:\S+ until", doctor), doctor
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()

    doctor = home.ok("doctor")
    assert "which no longer runs; the next command or service tick takes it over" in doctor
    renewed = home.run("renew", "web", "--force")  # at once: not after the 10-minute lease
    assert renewed.returncode == 0, renewed.stderr
    assert "web: revision 2 active" in renewed.stdout
    rt = home.runtime()
    try:
        assert holder_of(rt, "web") == (None, None)
    finally:
        rt.engine.dispose()


def test_two_renew_due_at_once_each_report_only_what_they_renewed(tmp_path: Path) -> None:
    home = new_home(tmp_path)
    names = [f"c{i}" for i in range(60)]
    fleet = tmp_path / "fleet.csv"
    fleet.write_text("".join(f"{n},{n}.example.com\n" for n in names), encoding="utf-8")
    home.ok("bulk-issue", str(fleet))
    home.make_due(names)
    first, second = home.start("renew", "--due"), home.start("renew", "--due")
    outputs = [p.communicate(timeout=300)[0] for p in (first, second)]
    assert first.returncode == second.returncode == 0
    renewed = Counter(
        m.group(1) for out in outputs for m in re.finditer(r"^(c\d+): revision 2 active", out, re.M)
    )
    assert sorted(renewed) == sorted(names), "each renewal reported once, by who did it"
    assert set(renewed.values()) == {1}
    others = [
        line
        for out in outputs
        for line in out.splitlines()
        if line and not re.match(r"c\d+: revision 2 active", line)
    ]
    assert all(
        re.match(r"c\d+: (renewed by another process\.|skipped; )", line) for line in others
    ), others


def test_only_holders_of_this_host_whose_process_is_gone_are_judged_gone() -> None:
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead_pid = int(finished.stdout)
    mine = instance_id()
    host = mine.rsplit(":", 2)[0]
    assert holder_gone(f"cli:{host}:{dead_pid}:abcd1234")
    assert holder_gone(f"{host}:{dead_pid}:abcd1234")
    assert not holder_gone(mine) and not holder_gone(f"cli:{mine}")
    assert not holder_gone(f"cli:another-host.example:{dead_pid}:abcd1234")
    assert not holder_gone("serve:other-host:1") and not holder_gone(None)


@pytest.mark.parametrize("holder", ["serve:other-host.example:1:abcd1234"])
def test_a_live_lease_of_another_host_is_never_taken_before_it_ends(
    runtime,
    holder: str,  # type: ignore[no-untyped-def]
) -> None:
    from datetime import timedelta

    from certman.models import KeyType
    from certman.service.lifecycle import IssueSpec, Lifecycle

    Lifecycle(runtime).issue(
        IssueSpec(
            name="web",
            domains=("web.example.com",),
            issuer="default",
            key_type=KeyType.EC_P256,
            validity=timedelta(days=30),
        )
    )
    assert claim(runtime, "web", Lease(holder=holder, duration=timedelta(minutes=10)))
    assert not claim(runtime, "web", Lease(holder="cli:" + instance_id()))
