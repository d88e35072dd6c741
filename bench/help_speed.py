"""`certman --help` against a bare typer app with the same command tree, in the same run."""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import table


def command_tree() -> dict[str, object]:
    """{group: {command: [option names]}} read off certman's real typer app."""
    import typer.main

    from certman.cli.main import app

    root = typer.main.get_command(app)

    def walk(command: object) -> object:
        subcommands = getattr(command, "commands", None)
        if subcommands:
            return {name: walk(sub) for name, sub in subcommands.items()}
        return [p.name for p in getattr(command, "params", [])]

    return walk(root)  # type: ignore[return-value]


def reference_source(tree: dict[str, object]) -> str:
    """A typer app with the same groups, commands and options (with help), and empty bodies."""
    # Same app settings as certman (no rich markup), so only the command modules differ.
    lines = [
        "from typing import Annotated",
        "",
        "import typer",
        "",
        "app = typer.Typer(no_args_is_help=True, add_completion=False, rich_markup_mode=None,"
        " pretty_exceptions_enable=False)",
    ]
    counter = 0

    def emit(parent: str, node: dict[str, object]) -> None:
        nonlocal counter
        for name, child in node.items():
            counter += 1
            if isinstance(child, dict):
                var = f"g{counter}"
                lines.append(f"{var} = typer.Typer(no_args_is_help=True)")
                lines.append(f"{parent}.add_typer({var}, name={name!r})")
                emit(var, child)
            else:
                params = ", ".join(
                    f"{p}: Annotated[str, typer.Option(help='The {p} option.')] = ''"
                    for p in child  # type: ignore[union-attr,attr-defined]
                    if p and p != "ctx"
                )
                lines.append(f"@{parent}.command({name!r})")
                lines.append(f"def c{counter}({params}) -> None:\n    '''{name}.'''")

    emit("app", tree)
    lines += [
        "",
        "@app.callback()",
        "def main(home: str = '', config: str = '') -> None:",
        "    pass",
        "",
        "app()",
    ]
    return "\n".join(lines) + "\n"


def time_command(argv: list[str], env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env=env)
    return time.perf_counter() - start


def command_env(scratch: Path) -> dict[str, str]:
    """The environment of both commands: the reference app importable as a module, and
    bytecode caching on (as in an installed certman) even where PYTHONDONTWRITEBYTECODE is
    set, so that neither side compiles its source on each run."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(scratch), env.get("PYTHONPATH")]))
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="certman-help-bench-") as scratch:
        reference = Path(scratch) / "reference_cli.py"
        reference.write_text(reference_source(command_tree()))
        return _measure(reference, args.runs)


def _measure(reference: Path, runs: int) -> int:
    # Both run as modules (`python -m`), each from its cached bytecode after the warm-up.
    env = command_env(reference.parent)
    ours_cmd = [sys.executable, "-m", "certman", "--help"]
    ref_cmd = [sys.executable, "-m", reference.stem, "--help"]
    for cmd in (ours_cmd, ref_cmd):  # warm the page cache and write the .pyc files
        time_command(cmd, env)
    ours, ref = [], []
    for _ in range(runs):  # interleaved, so machine noise hits both alike
        ours.append(time_command(ours_cmd, env))
        ref.append(time_command(ref_cmd, env))
    ours_ms, ref_ms = statistics.median(ours) * 1000, statistics.median(ref) * 1000
    ratio = ours_ms / ref_ms
    print(f"`--help` start-up, median of {runs} interleaved runs\n")
    print(
        table(
            ["command", "median", "ratio"],
            [
                ["bare typer app, same command tree", f"{ref_ms:.0f} ms", "1.00"],
                ["certman --help", f"{ours_ms:.0f} ms", f"{ratio:.2f}"],
            ],
        )
    )
    return 0 if ratio <= 1.2 else 1


if __name__ == "__main__":
    sys.exit(main())
