"""A moto server process on a free loopback port: AWS APIs for tests, through endpoint_url."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.components.pebble import free_port


class MotoServer:
    """`moto_server -H 127.0.0.1 -p PORT` as its own process; any AWS service moto has.

    Generic on purpose (KMS, S3, ACM, ELBv2, Route53, SNS ...): point boto3 at
    ``endpoint_url`` with dummy credentials; ``reset()`` wipes every resource.
    """

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MotoServer:
        moto = Path(sys.executable).parent / "moto_server"
        if not moto.exists():  # not run from the venv's python
            found = shutil.which("moto_server")
            if found is None:
                raise RuntimeError("moto_server is not installed: pip install 'moto[server]'")
            moto = Path(found)
        log = (self.workdir / "moto.log").open("ab")
        self._proc = subprocess.Popen(
            [str(moto), "-H", "127.0.0.1", "-p", str(self.port)], stdout=log, stderr=log
        )
        log.close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                tail = (self.workdir / "moto.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"moto_server exited with {self._proc.returncode}:\n{tail}")
            try:
                with urllib.request.urlopen(self.endpoint_url + "/moto-api/", timeout=1):
                    return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("moto_server did not start within 20 s")

    def reset(self) -> None:
        """Wipe every resource (moto's own API), so each test starts from an empty account."""
        request = urllib.request.Request(self.endpoint_url + "/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None


@contextmanager
def moto_server(workdir: Path | None = None) -> Iterator[str]:
    """Start a moto server, yield its endpoint URL, stop it at the end."""
    with tempfile.TemporaryDirectory(prefix="moto-") as scratch:
        server = MotoServer(workdir or Path(scratch)).start()
        try:
            yield server.endpoint_url
        finally:
            server.stop()
