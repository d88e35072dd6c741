"""The installed `certman` and `python -m certman`, run as an operator would run them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import CertmanProcess

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def issued(tmp_path_factory: pytest.TempPathFactory) -> CertmanProcess:
    """One home shared by the read-only tests below: initialised, with `web` issued."""
    certman = CertmanProcess(home=tmp_path_factory.mktemp("e2e") / "home")
    certman.ok("init")
    certman.ok("issue", "web", "-d", "www.example.com", "-d", "bücher.example")
    return certman


def test_the_console_script_shows_help(certman: CertmanProcess) -> None:
    run = certman.ok("--help")
    for command in ("init", "issue", "list", "show", "renew", "revoke", "export", "doctor"):
        assert command in run.stdout
    assert not certman.home.exists()  # --help touches nothing


def test_python_dash_m_certman_works(certman: CertmanProcess) -> None:
    module = CertmanProcess(home=certman.home, command=[sys.executable, "-m", "certman"])
    assert "issue" in module.ok("--help").stdout
    assert module.ok("--version").stdout.startswith("certman ")


def test_issue_list_show_export_and_openssl_verify(issued: CertmanProcess, tmp_path: Path) -> None:
    assert all(run.returncode == 0 for run in issued.runs)  # init and issue exit 0
    listing = issued.ok("list").stdout
    assert "web" in listing
    assert "active" in listing
    view = json.loads(issued.ok("show", "web", "--json").stdout)
    assert view["domains"] == ["www.example.com", "xn--bcher-kva.example"]
    assert view["revision"] == 1

    out = tmp_path / "out"
    issued.ok("export", "web", "--out", str(out))
    ca = json.loads(issued.ok("ca", "show", "default", "--json").stdout)
    (out / "root.pem").write_text(ca["root_certificate_pem"])
    verify = subprocess.run(
        [
            "openssl", "verify", "-purpose", "sslserver",
            "-verify_hostname", "www.example.com",
            "-CAfile", "root.pem", "-untrusted", "chain.pem", "cert.pem",
        ],
        cwd=out, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert verify.stdout.strip() == "cert.pem: OK"
    serial = subprocess.run(
        ["openssl", "x509", "-noout", "-serial", "-in", "cert.pem"],
        cwd=out, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert int(serial.strip().split("=")[1], 16) == int(view["serial"], 16)
    key_check = subprocess.run(
        ["openssl", "pkey", "-in", "privkey.pem", "-pubout"],
        cwd=out, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    cert_key = subprocess.run(
        ["openssl", "x509", "-in", "cert.pem", "-noout", "-pubkey"],
        cwd=out, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert key_check == cert_key


def test_bad_input_exits_2_with_one_error_line_and_no_traceback(issued: CertmanProcess) -> None:
    run = issued("issue", "other", "-d", "not a domain")
    assert run.returncode == 2
    assert run.stdout == ""
    assert run.stderr.startswith("error: Domain 'not a domain' is not a valid DNS name")
    assert len(run.stderr.strip().splitlines()) == 1
    assert "Traceback" not in run.stderr


def test_a_usage_error_exits_2(issued: CertmanProcess) -> None:
    run = issued("issue", "other", "--frobnicate")
    assert run.returncode == 2
    assert "No such option" in run.stderr
    assert "Traceback" not in run.stderr


def test_a_failed_operation_exits_1(certman: CertmanProcess) -> None:
    run = certman("doctor")  # the home does not exist
    assert run.returncode == 1
    assert run.stdout == ""
    assert "run `certman init` first" in run.stderr
    assert "Traceback" not in run.stderr
    assert not certman.home.exists()


def test_debug_shows_the_traceback(issued: CertmanProcess) -> None:
    run = issued("--debug", "issue", "other", "-d", "not a domain")
    assert run.returncode == 2
    assert "Traceback (most recent call last)" in run.stderr
    assert "ValidationError" in run.stderr


@pytest.mark.parametrize(
    "args", [("doctor",), ("list",), ("list", "--json"), ("audit", "list"), ("--help",)]
)
def test_a_reader_that_goes_away_ends_certman_quietly(
    issued: CertmanProcess, args: tuple[str, ...]
) -> None:
    # `certman doctor | head -1`, made certain: the read end is closed before certman writes,
    # so every write meets EPIPE.
    process = subprocess.Popen(
        [*issued.command, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=issued.env(),
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()
    stderr = process.stderr.read().decode()
    returncode = process.wait(timeout=120)
    assert stderr == ""
    assert returncode == 1  # as click ends its own output (--help) on EPIPE
