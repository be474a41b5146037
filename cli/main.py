"""Entry point of `mprobe`: the Typer app, and the one place that turns errors into exit codes.

The app has the hand-written commands (training, layers, the measures with options of their
own, the report stage) and one command for every other measure of the registry
(`measure_command`), built when `main` runs, so a measure registered by a plugin has its
command too.

Bad input (`InputError`, a usage error) prints one line and exits with code 2; an
unexpected error prints one line and exits with 1; `--debug` (anywhere on the line) shows
the traceback instead. An `InputError` about one parameter is printed with the flag that sets
it (`--bootstrap: must be ...`), read from the command's own options. Python warnings print as
one `warning:` line each.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings

import typer
from typer import Abort, Exit

from manifold_probe import __version__, registry
from manifold_probe.errors import InputError

from . import (
    commands_claims,
    commands_collapse,
    commands_curvature,
    commands_cutting_planes,
    commands_demo,
    commands_layers,
    commands_plot,
    commands_report,
    commands_sweep,
    commands_train,
    commands_zoo,
    measure_command,
)
from .output import err_console

try:  # typer >= 0.20 vendors click
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover - older typer on top of click
    from click import exceptions as click_exceptions

ClickException, UsageError = click_exceptions.ClickException, click_exceptions.UsageError
# `mprobe` alone prints the help; that is not an error
NoArgsIsHelp = getattr(click_exceptions, "NoArgsIsHelpError", ())

HAND_WRITTEN = {
    "curvature": commands_curvature.register,
    "collapse": commands_collapse.register_collapse,
    "spectra": commands_collapse.register_spectra,
    "cutting-planes": commands_cutting_planes.register,
    "family-curvature": lambda app: None,  # `mprobe curvature --family SPEC`
}
"""The measures whose commands are written by hand (options of their own beyond the registry's)."""

ALIASES = {"source": "--model", "model": "--model", "points_path": "--points", "labels_path": "--labels"}
"""Parameters whose flag is not named after them in every command."""

_INTERRUPTED = "interrupted; finished results are kept, nothing was half-written."


def build_app() -> typer.Typer:
    """The `mprobe` app: the hand-written commands, and a command for every other registered measure."""
    app = typer.Typer(
        name="mprobe",
        help="Measure the geometry of neural-network representations layer by layer.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode="markdown",
    )
    app.callback()(_root)
    commands_train.register(app)
    commands_layers.register(app)
    for measure in registry.measures():
        HAND_WRITTEN.get(measure.name, lambda app, m=measure: measure_command.register(app, m))(app)
    for module in (
        commands_report,
        commands_sweep,
        commands_zoo,
        commands_demo,
        commands_claims,
        commands_plot,
    ):
        module.register(app)
    return app


def flag_for(app: typer.Typer, args: list[str], parameter: str) -> str:
    """The flag that sets `parameter` in the command `args` runs (its own option of that name),
    else the parameter's own name."""
    group = typer.main.get_command(app)
    name = next((a for a in args if not a.startswith("-")), None)
    command = getattr(group, "commands", {}).get(name) if name else None
    for param in getattr(command, "params", []):
        if param.name == parameter and getattr(param, "opts", None):
            return max(param.opts, key=len)
    return ALIASES.get(parameter, parameter)


def _version(value: bool):
    if value:
        print(f"mprobe {__version__}")
        raise typer.Exit()


def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
):
    """Add --debug anywhere to see tracebacks."""


def _show_warning(message, category, filename, lineno, file=None, line=None):
    err_console.print(f"[yellow]warning:[/yellow] {message}", highlight=False)


@contextlib.contextmanager
def _tables_to_stderr(enabled: bool):
    """With `--json -` tables print to stderr, so that stdout holds only the file."""
    from . import output

    output.console.file = sys.stderr if enabled else None  # None: whatever sys.stdout is
    try:
        yield
    finally:
        output.console.file = None


def _writes_to_stdout(args: list[str]) -> bool:
    """Whether `--json -` or `--html -` sends a file to standard output."""
    return "-" in _option_values(args, "--json") + _option_values(args, "--html")


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    app = build_app()
    debug = "--debug" in args or bool(os.environ.get("MPROBE_DEBUG"))
    args = [a for a in args if a != "--debug"]
    warnings.showwarning = _show_warning
    try:
        # typer >= 0.20 returns an Exit's code instead of raising it (KeyboardInterrupt -> 130)
        with _tables_to_stderr(_writes_to_stdout(args)):
            code = app(args=args, prog_name="mprobe", standalone_mode=False)
        if isinstance(code, int) and not isinstance(code, bool) and code != 0:
            if code == 130:
                err_console.print(_INTERRUPTED)
            return code
    except NoArgsIsHelp:
        return 0
    except InputError as exc:
        if debug:
            raise
        text = f"{flag_for(app, args, exc.parameter)}: {exc.message}" if exc.parameter else exc.message
        err_console.print(f"[red]error:[/red] {text}", highlight=False, soft_wrap=True)
        return 2
    except UsageError as exc:
        if debug:
            raise
        err_console.print(f"[red]error:[/red] {exc.format_message()}", highlight=False, soft_wrap=True)
        if exc.ctx is not None:
            err_console.print(f"(see: mprobe {exc.ctx.info_name} --help)", highlight=False)
        return 2
    except Exit as exc:
        return exc.exit_code
    except (Abort, KeyboardInterrupt) as exc:
        if isinstance(exc.__cause__, EOFError):  # click turns an EOFError into Abort: no Ctrl-C
            return _unexpected(exc.__cause__, debug)
        err_console.print(_INTERRUPTED)
        return 130
    except ClickException as exc:
        err_console.print(f"[red]error:[/red] {exc.format_message()}", highlight=False, soft_wrap=True)
        return 2
    except Exception as exc:
        from manifold_probe.sources.models import forward_failure

        failure = forward_failure(exc, _option_values(args, "--model"))
        if failure is None or debug:
            return _unexpected(exc, debug)
        err_console.print(f"[red]error:[/red] {failure}", highlight=False, soft_wrap=True)
        return 2
    return 0


def _option_values(args: list[str], name: str) -> list[str]:
    """The values given to option `name` (`--model X` or `--model=X`), in order."""
    pairs = zip(args, args[1:] + [""], strict=True)
    return [
        value if arg == name else arg.partition("=")[2]
        for arg, value in pairs
        if arg == name or arg.startswith(f"{name}=")
    ]


def _unexpected(exc: BaseException, debug: bool) -> int:
    """An error that is not bad input: one line and exit 1 (the traceback with --debug)."""
    if debug:
        raise exc
    err_console.print(
        f"[red]error:[/red] unexpected {type(exc).__name__}: {exc} (run again with --debug for details)",
        highlight=False,
        soft_wrap=True,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
