"""Per-invocation state shared by every command: home, config, debug, and error reporting."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import typer

from certman.errors import CertmanError

if TYPE_CHECKING:
    from certman.config import Config
    from certman.service.runtime import Runtime

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class CliState:
    home: str | None = None
    config: str | None = None
    debug: bool = False
    _runtime: Runtime | None = field(default=None, repr=False)

    def load_config(self, *, creating: bool = False) -> Config:
        """The configuration; ``creating`` (for `certman init`) lets --config name a new file."""
        from certman.config import load_config, resolve_config_path, resolve_home
        from certman.errors import ConfigError, ValidationError

        home = resolve_home(self.home)
        if home.exists() and not home.is_dir():
            raise ValidationError(
                f"The certman home {home} is a file, not a directory; point --home (or "
                "CERTMAN_HOME) at a directory."
            )
        path = resolve_config_path(home, self.config)
        explicit = self.config or os.environ.get("CERTMAN_CONFIG")
        if explicit and not creating and not path.exists():
            # Silently running on the defaults instead would sign with the wrong settings.
            raise ConfigError(
                f"The configuration file {path} named by --config (or CERTMAN_CONFIG) does not "
                "exist; fix the path, or run `certman init` to create it."
            )
        return load_config(home, path)

    def runtime(self) -> Runtime:
        """The runtime for commands that need an initialised home."""
        if self._runtime is None:
            from certman.errors import InventoryError
            from certman.service.runtime import Runtime

            config = self.load_config()
            if (
                config.database_url.startswith("sqlite:///")
                and not Path(
                    config.database_url.removeprefix("sqlite:///").partition("?")[0]
                ).exists()
            ):
                raise InventoryError(
                    f"No certman home at {config.home} (no database); run `certman init` first, "
                    "or point --home / CERTMAN_HOME at an existing home."
                )
            self._runtime = Runtime(config=config)
        return self._runtime


def state(ctx: typer.Context) -> CliState:
    root = ctx.find_root()
    if not isinstance(root.obj, CliState):
        root.obj = CliState()
    return root.obj


# typer hands commands its (vendored) click Context, of which typer.Context is a subclass,
# so an isinstance check against typer.Context never matches: test the base class.
_CONTEXT_TYPES = tuple(t for t in typer.Context.__mro__ if t is not object)


def _debug_enabled(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    for value in (*args, *kwargs.values()):
        if isinstance(value, _CONTEXT_TYPES):
            return state(cast("typer.Context", value)).debug
    return bool(os.environ.get("CERTMAN_DEBUG"))


def _is_cli_flow(error: BaseException) -> bool:
    """typer's own exits and usage errors (typer may vendor click, so match by module)."""
    return isinstance(error, typer.Exit | KeyboardInterrupt) or type(error).__module__.startswith(
        ("click", "typer")
    )


def handles_errors(fn: F) -> F:
    """Turn certman errors into one line on stderr and the right exit code (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            result = fn(*args, **kwargs)
            sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
            return result
        except BrokenPipeError:
            # The reader of our output went away (`certman doctor | head`): click ends the
            # command quietly with exit 1 and silences the final flush, as for its own output.
            raise
        except CertmanError as e:
            if _debug_enabled(args, kwargs):
                _print_traceback()
            typer.echo(f"error: {e.message}", err=True)  # scrubbed when the error was made
            raise typer.Exit(e.exit_code) from None
        except Exception as e:  # a bug: say so plainly, keep the traceback behind --debug
            if _is_cli_flow(e):
                raise
            if _debug_enabled(args, kwargs):
                _print_traceback()
            from certman.redact import scrub

            typer.echo(
                f"error: certman failed unexpectedly ({type(e).__name__}: {scrub(str(e))}); "
                "rerun with --debug for the traceback and report it.",
                err=True,
            )
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def _print_traceback() -> None:
    import traceback

    from certman.redact import scrub

    # --debug: a driver's exception in the traceback may still hold the URL it was given.
    sys.stderr.write(scrub(traceback.format_exc()))


def emit_json(value: Any) -> None:
    import json

    sys.stdout.write(json.dumps(value, indent=2, sort_keys=False) + "\n")


def parse_duration_option(value: str | None, option: str) -> Any:
    from certman.durations import parse_duration

    if value is None:
        return None
    return parse_duration(value, field=option)
