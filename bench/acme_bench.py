"""ACME issuance: 20 certificates x 2 names against one Pebble, by certman, certbot and lego.

Every tool gets the same Pebble (validation without its random sleep, no nonce rejection,
no authorization reuse, so every order is validated) and answers HTTP-01 with its own
standalone server on Pebble's validation port. certbot and lego run once per certificate,
as an operator or a cron job runs them; certman runs its lifecycle (key sealed, order,
inventory, encrypted archive, audit) with a few orders in flight at once.

Goal: certman at least 5x faster than certbot, and faster than lego.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

from bench.common import table
from certman.config import load_config
from certman.models import KeyType
from certman.service.home import init_home
from certman.service.lifecycle import IssueSpec, Lifecycle
from certman.service.runtime import Runtime
from tests.components.pebble import Pebble, PebbleOptions

ROOT = Path(__file__).resolve().parents[1]
BENCH_VENV = ROOT / ".tmp" / "bench-venv"


def names(tool: str, i: int) -> tuple[str, str]:
    return f"{tool}{i}.example.com", f"www.{tool}{i}.example.com"


# --- certman ---------------------------------------------------------------------------------


def certman_run(pebble: Pebble, work: Path, count: int, concurrency: int, tag: str) -> float:
    home = work / f"certman-{tag}"
    config = load_config(home, home / "certman.toml")
    init_home(config, ca_key_type=None)
    with config.path.open("a") as f:
        f.write(
            f'\n[issuers.pebble]\ntype = "acme"\ndirectory = "{pebble.directory_url}"\n'
            f'ca_bundle = "{pebble.ca_bundle}"\nhttp_address = "127.0.0.1:{pebble.http_port}"\n'
        )
    rt = Runtime(config=load_config(home, config.path))
    rt.issuer("pebble")

    def issue(i: int) -> str:
        lifecycle = Lifecycle(rt)
        name = f"{tag}{i}"
        lifecycle.plan(
            IssueSpec(
                name=name,
                domains=names(tag, i),
                issuer="pebble",
                key_type=KeyType.EC_P256,
                validity=timedelta(days=90),
            )
        )
        return lifecycle.advance(name).state.value

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        states = list(pool.map(issue, range(count)))
    elapsed = time.perf_counter() - start
    rt.engine.dispose()
    if states != ["active"] * count:
        raise SystemExit(f"certman ({tag}) did not issue every certificate: {states}")
    return elapsed


# --- certbot -----------------------------------------------------------------------------


def certbot_binary() -> Path:
    """certbot from PyPI, in its own venv (it pins its own acme/josepy)."""
    certbot = BENCH_VENV / "bin" / "certbot"
    if not certbot.exists():
        print("installing certbot into .tmp/bench-venv ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(BENCH_VENV)], check=True)
        subprocess.run(
            [str(BENCH_VENV / "bin" / "pip"), "install", "--quiet", "certbot"], check=True
        )
    return certbot


def certbot_run(pebble: Pebble, work: Path, count: int) -> float:
    certbot = certbot_binary()
    base = work / "certbot"
    env = {**os.environ, "REQUESTS_CA_BUNDLE": str(pebble.ca_bundle)}
    start = time.perf_counter()
    for i in range(count):
        cmd = [str(certbot), "certonly", "--non-interactive", "--agree-tos"]
        cmd += ["--register-unsafely-without-email", "--server", pebble.directory_url]
        cmd += ["--standalone", "--http-01-port", str(pebble.http_port)]
        cmd += ["--http-01-address", "127.0.0.1", "--key-type", "ecdsa"]
        cmd += ["--config-dir", str(base / "config"), "--work-dir", str(base / "work")]
        cmd += ["--logs-dir", str(base / "logs"), "--cert-name", f"certbot{i}"]
        for name in names("certbot", i):
            cmd += ["-d", name]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"certbot failed on certificate {i}:\n{done.stderr[-2000:]}")
    elapsed = time.perf_counter() - start
    issued = list((base / "config" / "live").glob("certbot*/fullchain.pem"))
    if len(issued) != count:
        raise SystemExit(f"certbot issued {len(issued)} of {count} certificates")
    return elapsed


# --- lego --------------------------------------------------------------------------------


def lego_run(pebble: Pebble, work: Path, count: int) -> float:
    lego = shutil.which("lego")
    if lego is None:
        raise SystemExit("lego is not installed; scripts/apt-install.sh lego")
    base = work / "lego"
    env = {**os.environ, "LEGO_CA_CERTIFICATES": str(pebble.ca_bundle)}
    start = time.perf_counter()
    for i in range(count):
        cmd = [lego, "--server", pebble.directory_url, "--accept-tos"]
        cmd += ["--email", "bench@example.com", "--path", str(base), "--key-type", "ec256"]
        cmd += ["--http", "--http.port", f"127.0.0.1:{pebble.http_port}"]
        for name in names("lego", i):
            cmd += ["-d", name]
        done = subprocess.run([*cmd, "run"], env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"lego failed on certificate {i}:\n{done.stderr[-2000:]}")
    elapsed = time.perf_counter() - start
    issued = list((base / "certificates").glob("lego*.example.com.crt"))
    if len(issued) != count:
        raise SystemExit(f"lego issued {len(issued)} of {count} certificates")
    return elapsed


# --- main --------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--skip-lego", action="store_true", help="lego takes minutes")
    args = parser.parse_args(argv)
    subprocess.run([str(ROOT / "scripts" / "apt-install.sh"), "pebble", "lego"], check=True)
    work = Path(tempfile.mkdtemp(prefix="certman-acme-bench-"))
    options = PebbleOptions(nonce_reject=0, authz_reuse=0)
    with Pebble(work / "pebble", options) as pebble:
        results = {
            f"certman ({args.concurrency} orders in flight)": certman_run(
                pebble, work, args.count, args.concurrency, "cm"
            ),
            "certman (one order at a time)": certman_run(pebble, work, args.count, 1, "seq"),
            "certbot (PyPI, one run per certificate)": certbot_run(pebble, work, args.count),
        }
        if not args.skip_lego:
            results["lego (Debian, one run per certificate)"] = lego_run(pebble, work, args.count)
    shutil.rmtree(work, ignore_errors=True)
    ours = next(iter(results.values()))
    rows = [
        [tool, f"{seconds:.1f} s", f"{seconds / args.count:.2f} s", f"{seconds / ours:.1f}x"]
        for tool, seconds in results.items()
    ]
    print(f"ACME issuance: {args.count} certificates x 2 names, one Pebble (VA without sleep)\n")
    print(table(["tool", "total", "per certificate", "time vs certman"], rows))
    certbot = results["certbot (PyPI, one run per certificate)"]
    lego = results.get("lego (Debian, one run per certificate)")
    ok = certbot / ours >= 5 and (lego is None or lego > ours)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
