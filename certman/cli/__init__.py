"""The `certman` command line (typer)."""
