"""`python -m certman` runs the CLI."""

from certman.cli.main import run

run()
