"""A throwaway SoftHSM2 token directory for tests (Debian package softhsm2)."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

MODULE = Path("/usr/lib/softhsm/libsofthsm2.so")
SO_PIN = "87654321"


def softhsm_available() -> bool:
    return MODULE.is_file() and shutil.which("softhsm2-util") is not None


@dataclass(frozen=True)
class SoftHsm:
    """SoftHSM2 configured by ``conf`` (set SOFTHSM2_CONF to it before loading the module)."""

    conf: Path
    tokens: Path
    module: Path = MODULE

    @classmethod
    def create(cls, workdir: Path) -> SoftHsm:
        tokens = workdir / "tokens"
        tokens.mkdir(parents=True)
        conf = workdir / "softhsm2.conf"
        conf.write_text(
            f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n"
        )
        return cls(conf=conf, tokens=tokens)

    def env(self) -> dict[str, str]:
        return {"SOFTHSM2_CONF": str(self.conf)}

    def init_token(self, label: str, pin: str) -> None:
        """A new token; SoftHSM2 finds it at the next C_Initialize of a process."""
        subprocess.run(
            [
                "softhsm2-util", "--init-token", "--free", "--label", label,
                "--so-pin", SO_PIN, "--pin", pin,
            ],
            env={"SOFTHSM2_CONF": str(self.conf), "PATH": "/usr/bin:/bin"},
            check=True,
            capture_output=True,
        )  # fmt: skip

    def token_files(self) -> list[Path]:
        return [p for p in self.tokens.rglob("*") if p.is_file()]
