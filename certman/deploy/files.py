"""The `file` target: certificate files replaced atomically, a reload, and a TLS probe."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from certman.deploy.probe import Endpoint, wait_for_serial
from certman.durations import parse_duration
from certman.errors import ConfigError, DeployError, ValidationError
from certman.interfaces import (
    DeployRequest,
    DeployResponse,
    PlanRequest,
    PlanResponse,
    RollbackRequest,
    VerifyRequest,
    VerifyResponse,
)

if TYPE_CHECKING:
    from certman.service.runtime import Runtime

PATH_KEYS = ("cert_path", "chain_path", "fullchain_path", "key_path")
KNOWN_KEYS = {
    "type",
    "name",
    *PATH_KEYS,
    "owner",
    "reload_command",
    "probe",
    "probe_timeout",
    "reload_timeout",
}


@dataclass(frozen=True, kw_only=True)
class FileTargetSettings:
    name: str
    paths: Mapping[str, Path]
    owner: tuple[str | None, str | None] = (None, None)
    reload_command: str = ""
    probe: Endpoint | None = None
    probe_timeout: float = 15.0
    reload_timeout: float = 60.0

    @classmethod
    def parse(cls, settings: Mapping[str, Any], where: str) -> FileTargetSettings:
        unknown = sorted(set(settings) - KNOWN_KEYS)
        if unknown:
            raise ConfigError(
                f"Unknown key {unknown[0]!r} in {where}; a file target takes: "
                f"{', '.join(sorted(KNOWN_KEYS - {'type', 'name'}))}."
            )
        paths = {k: Path(str(settings[k])) for k in PATH_KEYS if settings.get(k)}
        if not paths:
            raise ConfigError(f"{where} names no file; set at least one of {', '.join(PATH_KEYS)}.")
        for key, path in paths.items():
            if not path.is_absolute():
                raise ConfigError(f"{key} = {str(path)!r} in {where} must be an absolute path.")
        if len(set(paths.values())) != len(paths):
            raise ConfigError(f"{where} names the same file twice; give each file its own path.")
        owner: tuple[str | None, str | None] = (None, None)
        if settings.get("owner"):
            user, _, group = str(settings["owner"]).partition(":")
            owner = (user or None, group or None)
        try:
            probe_timeout = parse_duration(
                str(settings.get("probe_timeout", "15s")), field="probe_timeout"
            ).total_seconds()
            reload_timeout = parse_duration(
                str(settings.get("reload_timeout", "60s")), field="reload_timeout"
            ).total_seconds()
        except ValidationError as e:
            raise ConfigError(f"{e} (in {where})") from None
        probe = (
            Endpoint.parse(str(settings["probe"]), where=where) if settings.get("probe") else None
        )
        return cls(
            name=str(settings["name"]),
            paths=paths,
            owner=owner,
            reload_command=str(settings.get("reload_command", "")),
            probe=probe,
            probe_timeout=probe_timeout,
            reload_timeout=reload_timeout,
        )


@dataclass
class FileDeployer:
    """Writes the files (key 0600), runs the reload command, probes the served serial.

    Every file is written to a temporary file in its own directory, flushed and renamed,
    so a reader sees the old file or the new one, never half of one. The files' previous
    contents are kept in memory until the rollout ends, for a rollback within the run.
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
        self._reload()
        return DeployResponse(changed=changed, state={"files": ",".join(self.settings.paths)})

    def verify(self, request: VerifyRequest) -> VerifyResponse:
        if self.settings.probe is None:
            return VerifyResponse(ok=True, message="files written and reloaded (no probe set)")
        from certman.pki import certificate_facts, load_certificate

        serial = certificate_facts(request.certificate_pem).serial
        cert = load_certificate(request.certificate_pem)
        ok, seen = wait_for_serial(
            self.settings.probe, _first_dns_name(cert), serial, timeout=self.settings.probe_timeout
        )
        if ok:
            return VerifyResponse(ok=True, message=f"{self.settings.probe} serves serial {serial}.")
        return VerifyResponse(
            ok=False,
            message=f"{self.settings.probe} still shows {seen} after "
            f"{self.settings.probe_timeout:.0f}s, not the new serial {serial}.",
        )

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
        try:
            self._reload()
        except DeployError as e:
            raise DeployError(
                f"the previous files are back in place, but reloading failed again ({e.message}) "
                "Reload the server by hand."
            ) from None

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
        from certman.fileio import write_private

        changed = False
        for key, data in contents.items():
            path = self.settings.paths[key]
            if _read(path) == data:
                continue
            mode = 0o600 if key == "key_path" else 0o644
            try:
                write_private(path, data, mode=mode)
                user, group = self.settings.owner
                if user is not None or group is not None:
                    shutil.chown(path, user, group)  # type: ignore[arg-type]
            except (OSError, LookupError) as e:
                raise DeployError(
                    f"Cannot write {path} for target {self.settings.name!r}: {e}; check the "
                    "path, its permissions and the owner setting."
                ) from None
            changed = True
        return changed

    def _reload(self) -> None:
        command = self.settings.reload_command
        if not command:
            return
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
            raise DeployError(
                f"The reload command of target {self.settings.name!r} did not finish within "
                f"{self.settings.reload_timeout:.0f}s."
            ) from None
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip().splitlines()
            raise DeployError(
                f"The reload command of target {self.settings.name!r} failed (exit "
                f"{result.returncode})" + (f": {detail[-1]}" if detail else "") + "."
            )


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _first_dns_name(cert: Any) -> str | None:
    from cryptography import x509

    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    names = san.get_values_for_type(x509.DNSName)
    return names[0].lstrip("*.") if names else None


def build_deployer(runtime: Runtime, settings: Mapping[str, Any]) -> FileDeployer:
    where = f"[targets.{settings['name']}] of {runtime.config.path}"
    deployer = FileDeployer(settings=FileTargetSettings.parse(settings, where))
    deployer.preflight_paths()
    return deployer
