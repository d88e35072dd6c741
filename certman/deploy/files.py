"""The `file` target: certificate files replaced atomically, a reload, and a TLS probe."""

from __future__ import annotations

import grp
import os
import pwd
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from certman.contracts.deployer import (
    DeployRequest,
    DeployResponse,
    PlanRequest,
    PlanResponse,
    RollbackRequest,
    RolloutPrecheckRequest,
    VerifyRequest,
    VerifyResponse,
)
from certman.deploy.probe import Probe
from certman.deploy.settings import check_keys, seconds
from certman.errors import ConfigError, DeployError, ValidationError

if TYPE_CHECKING:
    from certman.contracts.build_context import BuildContext

PATH_KEYS = ("cert_path", "chain_path", "fullchain_path", "key_path")
KNOWN_KEYS = {
    "type",
    "name",
    *PATH_KEYS,
    "owner",
    "reload_command",
    "probe",
    "probe_timeout",
    "probe_settle",
    "reload_timeout",
}
# What a server writes when it refuses its configuration: nginx "[emerg]"/"[crit]"/"[error]",
# haproxy "[ALERT]", systemctl "Job for ... failed".
_ERROR_LINE = re.compile(r"\[(emerg|alert|crit|error)\]|\berror\b|\bfailed\b", re.IGNORECASE)
# ... and what says nothing about a failure ("[notice] signal process started").
_NOTICE_LINE = re.compile(r"\[(notice|info|debug)\]", re.IGNORECASE)
# nginx's "2026/01/02 03:04:05 [emerg] 123#123: " prefix: the level is worth keeping.
_PREFIX = re.compile(r"^(?:\d{4}/\d\d/\d\d \d\d:\d\d:\d\d )?(\[\w+\] )?(?:\d+#\d+: )?")


@dataclass(frozen=True, kw_only=True)
class FileTargetSettings:
    name: str
    paths: Mapping[str, Path]
    owner: tuple[int, int] | None = None  # (uid, gid), -1 keeps that one
    reload_command: str = ""
    probe: Probe | None = None
    reload_timeout: float = 60.0

    @classmethod
    def parse(cls, settings: Mapping[str, Any], where: str) -> FileTargetSettings:
        check_keys(settings, KNOWN_KEYS, where, "a file target")
        paths = {k: Path(str(settings[k])) for k in PATH_KEYS if settings.get(k)}
        if not paths:
            raise ConfigError(f"{where} names no file; set at least one of {', '.join(PATH_KEYS)}.")
        for key, path in paths.items():
            if not path.is_absolute():
                raise ConfigError(f"{key} = {str(path)!r} in {where} must be an absolute path.")
        if len(set(paths.values())) != len(paths):
            raise ConfigError(f"{where} names the same file twice; give each file its own path.")
        return cls(
            name=str(settings["name"]),
            paths=paths,
            owner=_owner(str(settings["owner"]), where) if settings.get("owner") else None,
            reload_command=str(settings.get("reload_command", "")),
            probe=Probe.from_settings(settings, where, default_timeout="15s"),
            reload_timeout=seconds(settings, "reload_timeout", "60s", where),
        )


def _owner(text: str, where: str) -> tuple[int, int]:
    """``user``, ``user:group`` or ``:group`` (names or numeric ids) as (uid, gid)."""
    user, _, group = text.partition(":")
    try:
        uid = -1 if not user else int(user) if user.isdigit() else pwd.getpwnam(user).pw_uid
    except KeyError:
        raise ConfigError(
            f"owner = {text!r} in {where} names user {user!r}, which does not exist on this "
            'machine; use an existing user (and group), e.g. "root:nginx".'
        ) from None
    try:
        gid = -1 if not group else int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
    except KeyError:
        raise ConfigError(
            f"owner = {text!r} in {where} names group {group!r}, which does not exist on this "
            'machine; use an existing group, e.g. "root:nginx".'
        ) from None
    if uid == -1 and gid == -1:
        raise ConfigError(f'owner = {text!r} in {where} names no one; write "user:group".')
    return uid, gid


@dataclass
class FileDeployer:
    """Writes the files (key 0600), runs the reload command, probes the served serial.

    All files of a deployment are staged as temporary files in their own directories,
    flushed, given their owner, and then renamed back to back, so a reader sees each file
    old or new, never half of one, and a reload sees a certificate with its own key. The
    files' previous contents are kept in memory until the rollout ends, for a rollback
    within the run.
    """

    settings: FileTargetSettings
    target_type: str = "file"
    _backups: dict[tuple[str, int], dict[str, bytes | None]] = field(default_factory=dict)

    def preflight_paths(self) -> None:
        """Refuse before writing anything when a directory is missing or not writable."""
        for key, path in self.settings.paths.items():
            directory = path.parent
            if not directory.is_dir():
                raise ConfigError(
                    f"The directory of {key} ({directory}) for target {self.settings.name!r} "
                    "does not exist; create it or fix the path."
                )
            if not os.access(directory, os.W_OK | os.X_OK):
                raise ConfigError(
                    f"The directory of {key} ({directory}) for target {self.settings.name!r} "
                    "is not writable by certman; fix its permissions."
                )

    def precheck_rollout(self, request: RolloutPrecheckRequest) -> None:
        self.preflight_paths()
        if request.probe and self.settings.probe is not None:
            self.settings.probe.require_answer(request.server_name)

    def _contents(self, certificate: bytes, chain: bytes, key: bytes) -> dict[str, bytes]:
        return {
            "cert_path": certificate,
            "chain_path": chain,
            "fullchain_path": certificate + chain,
            "key_path": key,
        }

    def deploy(self, request: DeployRequest) -> DeployResponse:
        self.preflight_paths()
        wanted = self._contents(request.certificate_pem, request.chain_pem, request.private_key_pem)
        backup_key = (request.name, request.revision)
        if backup_key not in self._backups:
            self._backups[backup_key] = {k: _read(p) for k, p in self.settings.paths.items()}
        changed = self._write({k: wanted[k] for k in self.settings.paths})
        failure = self._reload()
        if failure:
            raise DeployError(f"The reload command of target {self.settings.name!r} {failure}.")
        return DeployResponse(changed=changed, state={"files": ",".join(self.settings.paths)})

    def verify(self, request: VerifyRequest) -> VerifyResponse:
        if self.settings.probe is None:
            return VerifyResponse(ok=True, message="files written and reloaded (no probe set)")
        ok, message = self.settings.probe.sees(request.certificate_pem)
        return VerifyResponse(ok=ok, message=message + ".")

    def rollback(self, request: RollbackRequest) -> None:
        backup = self._backups.pop((request.name, request.revision), None)
        if backup is not None:
            contents = backup
        elif request.previous is not None:
            p = request.previous
            all_files = self._contents(p.certificate_pem, p.chain_pem, p.private_key_pem)
            contents = {k: all_files[k] for k in self.settings.paths}
        else:
            return
        for key, data in contents.items():
            path = self.settings.paths[key]
            if data is None:
                path.unlink(missing_ok=True)
        self._write({k: v for k, v in contents.items() if v is not None})
        failure = self._reload()
        if failure:
            raise DeployError(
                f"the previous files are back in place, but the reload command {failure} "
                "again; reload the server by hand"
            )

    def plan(self, request: PlanRequest) -> PlanResponse:
        from certman.pki import certificate_facts

        path = self.settings.paths.get("cert_path") or self.settings.paths.get("fullchain_path")
        current = _read(path) if path else None
        if not current:
            return PlanResponse(
                description=f"write {', '.join(map(str, self.settings.paths.values()))}"
            )
        try:
            facts = certificate_facts(current)
        except ValidationError:
            return PlanResponse(description=f"replace unreadable {path}")
        return PlanResponse(
            current_serial=facts.serial,
            current_not_after=facts.not_after.isoformat().replace("+00:00", "Z"),
            description=f"replace {', '.join(map(str, self.settings.paths.values()))}",
        )

    def forget(self, name: str, revision: int) -> None:
        """Drop in-memory backups once a rollout is over (they may hold an old key)."""
        self._backups.pop((name, revision), None)

    def _write(self, contents: Mapping[str, bytes]) -> bool:
        """Replace the files that differ, all staged first and renamed together."""
        from certman.fileio import write_private_many

        changes = [
            (self.settings.paths[k], data)
            for k, data in contents.items()
            if _read(self.settings.paths[k]) != data
        ]
        if not changes:
            return False
        modes = {p: 0o600 if k == "key_path" else 0o644 for k, p in self.settings.paths.items()}
        try:
            write_private_many(changes, modes=modes, owner=self.settings.owner)
        except OSError as e:
            raise DeployError(
                f"Cannot write the files of target {self.settings.name!r} ({e}); check the "
                "paths, their permissions and the owner setting."
            ) from None
        return True

    def _reload(self) -> str:
        """Run the reload command; "" when it worked, else a clause saying how it failed."""
        command = self.settings.reload_command
        if not command:
            return ""
        try:
            result = subprocess.run(
                command,
                shell=True,
                capture_output=True,
                text=True,
                timeout=self.settings.reload_timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return f"did not finish within {self.settings.reload_timeout:g}s"
        if result.returncode == 0:
            return ""
        detail = reload_error_detail(result.stderr or result.stdout)
        return f"failed (exit {result.returncode}" + (f": {detail})" if detail else ")")


def reload_error_detail(output: str) -> str:
    """The line of a reload's output that says why: the first error line, else the last
    line that is not a notice ("" when there is none)."""
    lines = [_PREFIX.sub(r"\1", line.strip()) for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if _ERROR_LINE.search(line)]
    if errors:
        return errors[0].rstrip(".")
    others = [line for line in lines if not _NOTICE_LINE.search(line)]
    return others[-1].rstrip(".") if others else ""


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def build_deployer(context: BuildContext, settings: Mapping[str, Any]) -> FileDeployer:
    where = f"[targets.{settings['name']}] of {context.config_path}"
    deployer = FileDeployer(settings=FileTargetSettings.parse(settings, where))
    deployer.preflight_paths()
    return deployer
