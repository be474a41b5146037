"""Entry point of `mprobe`: the Typer app, and the one place that turns errors into exit codes.

Bad input (`InputError`, a usage error) prints one line and exits with code 2; an
unexpected error prints one line and exits with 1; `--debug` (anywhere on the line) shows
the traceback instead. Python warnings print as one `warning:` line each.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings

import typer
from typer import Abort, Exit

from manifold_probe import __version__
from manifold_probe.errors import InputError

from . import (
    commands_claims,
    commands_collapse,
    commands_curvature,
    commands_cutting_planes,
    commands_demo,
    commands_id,
    commands_layers,
    commands_report,
    commands_sweep,
    commands_train,
    commands_zoo,
)
from .output import err_console

try:  # typer >= 0.20 vendors click
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover - older typer on top of click
    from click import exceptions as click_exceptions

ClickException, UsageError = click_exceptions.ClickException, click_exceptions.UsageError
# `mprobe` alone prints the help; that is not an error
NoArgsIsHelp = getattr(click_exceptions, "NoArgsIsHelpError", ())

app = typer.Typer(
    name="mprobe",
    help="Measure the geometry of neural-network representations layer by layer.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)
commands_train.register(app)
commands_layers.register(app)
commands_id.register(app)
commands_curvature.register(app)
commands_collapse.register(app)
commands_cutting_planes.register(app)
commands_report.register(app)
commands_sweep.register(app)
commands_zoo.register(app)
commands_demo.register(app)
commands_claims.register(app)


_INTERRUPTED = "interrupted; finished results are kept, nothing was half-written."

FLAGS = {
    "(points=H, labels=y, classifier=W)": "(--points H.npy --labels y.npy --classifier W.npy [--bias b.npy])",
    "neighbourhood='perturb'": "--neighbourhood perturb",
    "neighbourhood='knn'": "--neighbourhood knn",
    "from load_data(...)": "from --data",
    "list_layers(model) (`mprobe layers --model ...`)": "`mprobe layers --model ...`",
    "list_layers(model) (`mprobe layers`)": "`mprobe layers`",
    "list_layers(model)": "`mprobe layers`",
    "a state_dict with its arch": "a state_dict with --arch",
}
"""How the library's messages, which name parameters, read on the command line (flags)."""


def cli_message(message: str) -> str:
    """A library error message with its parameter names replaced by the command's flags."""
    for phrase, flags in FLAGS.items():
        message = message.replace(phrase, flags)
    return message


def _version(value: bool):
    if value:
        print(f"mprobe {__version__}")
        raise typer.Exit()


@app.callback()
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
        err_console.print(f"[red]error:[/red] {cli_message(str(exc))}", highlight=False, soft_wrap=True)
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
