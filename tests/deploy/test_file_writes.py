"""The `file` target's writes and settings without a server: pairs, modes, owner, errors."""

from __future__ import annotations

import grp
import os
import pwd
import stat
from pathlib import Path

import pytest

from certman.contracts.deployer import DeployRequest
from certman.deploy.files import FileDeployer, FileTargetSettings, reload_error_detail
from certman.errors import ConfigError


def deployer(tmp_path: Path, **extra: str) -> FileDeployer:
    settings = {
        "name": "web",
        "cert_path": str(tmp_path / "cert.pem"),
        "key_path": str(tmp_path / "key.pem"),
        **extra,
    }
    return FileDeployer(settings=FileTargetSettings.parse(settings, "[targets.web] of test"))


def request(serial: int) -> DeployRequest:
    return DeployRequest(
        name="site",
        revision=serial,
        certificate_pem=f"cert {serial}\n".encode(),
        chain_pem=b"",
        private_key_pem=f"key {serial}\n".encode(),
    )


def test_certificate_and_key_are_staged_together_then_renamed_back_to_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reload between two renames would pair a new certificate with an old key: every
    file is written, flushed and owned before the first rename."""
    target = deployer(tmp_path, owner="nobody:nogroup")
    nobody, nogroup = pwd.getpwnam("nobody").pw_uid, grp.getgrnam("nogroup").gr_gid
    real_replace = os.replace
    staged_at_each_rename: list[list[tuple[str, int, int, int]]] = []

    def spy(src: str | Path, dst: str | Path) -> None:
        staged_at_each_rename.append(
            [
                (p.name.split(".")[1], p.stat().st_uid, p.stat().st_gid, p.stat().st_mode & 0o777)
                for p in sorted(tmp_path.glob(".*.tmp"))
            ]
        )
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    target.deploy(request(1))

    assert len(staged_at_each_rename) == 2
    assert sorted(staged_at_each_rename[0]) == [
        ("cert", nobody, nogroup, 0o644),
        ("key", nobody, nogroup, 0o600),
    ]
    assert (tmp_path / "cert.pem").read_bytes() == b"cert 1\n"
    assert stat.S_IMODE((tmp_path / "key.pem").stat().st_mode) == 0o600
    assert list(tmp_path.glob(".*.tmp")) == []


def test_unchanged_files_are_not_rewritten(tmp_path: Path) -> None:
    target = deployer(tmp_path)
    assert target.deploy(request(1)).changed
    assert not target.deploy(request(1)).changed


@pytest.mark.parametrize(
    ("owner", "expected"),
    [
        ("nobody", (pwd.getpwnam("nobody").pw_uid, -1)),
        (":nogroup", (-1, grp.getgrnam("nogroup").gr_gid)),
        ("65534:65534", (65534, 65534)),
    ],
)
def test_owner_takes_names_or_ids(tmp_path: Path, owner: str, expected: tuple[int, int]) -> None:
    assert deployer(tmp_path, owner=owner).settings.owner == expected


def test_owner_naming_nobody_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="names no one"):
        deployer(tmp_path, owner=":")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"probe": "127.0.0.1:443", "probe_settle": "soon"}, "probe_settle 'soon' is not a"),
        (
            {"probe": "127.0.0.1:443", "probe_timeout": "2s", "probe_settle": "2s"},
            "probe_settle (2s) in [targets.web] of test must be shorter than probe_timeout",
        ),
        ({"wave_size": 2}, "Unknown key 'wave_size' in [targets.web] of test"),
    ],
)
def test_bad_probe_settings_name_the_key_and_the_file(
    tmp_path: Path, settings: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        deployer(tmp_path, **settings)
    assert message in raised.value.message


@pytest.mark.parametrize(
    ("output", "detail"),
    [
        (
            '2026/12/01 20:53:10 [emerg] 2663#2663: open() "/x.conf" failed (2: No such file)\n'
            "nginx: configuration file /x.conf test failed\n",
            '[emerg] open() "/x.conf" failed (2: No such file)',
        ),
        ("2026/12/01 20:53:10 [notice] 25471#25471: signal process started\n", ""),
        (
            "Job for nginx.service failed because the control process exited with error code.\n"
            'See "systemctl status nginx.service" for details.\n',
            "Job for nginx.service failed because the control process exited with error code",
        ),
        ("starting\nhaproxy: no such file\n", "haproxy: no such file"),
    ],
)
def test_the_reload_error_detail_is_the_line_that_says_why(output: str, detail: str) -> None:
    assert reload_error_detail(output) == detail
