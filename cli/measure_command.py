"""The command of a measure that has no hand-written one: built from its registry entry.

The command takes the shared source options (`options.source_options`: --model with --data, or
--points), the measure's own options (`registry.Option`: each becomes a flag with its help),
--json, --html, --plotlyjs and --format, and for a measure that compares two representations
(`Measure.compares`) a --compare checkpoint (or points file) measured the same way; it calls the
measure through the Python API, prints its tables, writes its files, and exits with code 3 when
no layer could be measured.
"""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path
from typing import Annotated, Any

import typer

from manifold_probe import registry

from .options import Formats, HtmlOut, JsonOut, PlotlyJs, SourceArgs, source_options, split_list
from .output import exit_if_nothing_measured, print_result, write_outputs


def _annotation(option: registry.Option):
    """The Typer annotation of one measure option."""
    help_text = option.help
    if option.type is list:
        shown = ",".join(option.default) if option.default else False
        return Annotated[list[str] | None, typer.Option(option.cli_flag, help=help_text, show_default=shown)]
    kind = option.type if option.default is not None else (option.type | None)
    extra: dict[str, Any] = {}
    if option.minimum is not None and option.type in (int, float):
        extra["min"] = option.minimum
    return Annotated[kind, typer.Option(option.cli_flag, help=help_text, **extra)]


def measure_command(measure: registry.Measure):
    """A Typer command function for `measure` (see the module docstring)."""

    def command(
        json=None, html=None, plotlyjs="inline", formats="html", compare=None, *, source: SourceArgs, **own
    ):
        values = {}
        for option in measure.options:
            value = own[option.parameter]
            if option.type is list:
                value = split_list(value, parameter=option.parameter) or option.default
            values[option.parameter] = value
        common = {"seed": source.seed, "device": source.device, "progress": not source.quiet}
        classifier = measure.needs_labels and source.points is None
        with source.load(min_points=4, classifier=classifier) as arrays:
            if compare is None:
                result = measure(arrays, **common, **values)
            else:
                second = {"points": compare} if source.points is not None else {"model": str(compare)}
                with dataclasses.replace(source, **second).load(min_points=4, classifier=classifier) as other:
                    result = measure(arrays, other=other, **common, **values)
        print_result(result)
        write_outputs(result, json, html, plotlyjs=plotlyjs, formats=formats)
        exit_if_nothing_measured(result)

    params = [
        inspect.Parameter(
            o.parameter,
            inspect.Parameter.KEYWORD_ONLY,
            default=None if o.type is list else o.default,
            annotation=_annotation(o),
        )  # fmt: skip
        for o in measure.options
    ]
    if measure.compares:
        help_text = ("A second checkpoint (or, with --points, a second points file) measured the same way "
                     "on the same data, to compare with.")  # fmt: skip
        compare = Annotated[Path | None, typer.Option("--compare", help=help_text, show_default=False)]
        params.append(
            inspect.Parameter("compare", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=compare)
        )
    params += [
        inspect.Parameter("json", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=JsonOut),
        inspect.Parameter("html", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=HtmlOut),
        inspect.Parameter("plotlyjs", inspect.Parameter.KEYWORD_ONLY, default="inline", annotation=PlotlyJs),
        inspect.Parameter("formats", inspect.Parameter.KEYWORD_ONLY, default="html", annotation=Formats),
        inspect.Parameter("source", inspect.Parameter.KEYWORD_ONLY, annotation=SourceArgs),
    ]
    command.__signature__ = inspect.Signature(params)
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__name__ = f"{measure.name.replace('-', '_')}_command"
    command.__doc__ = measure.help or measure.description
    return source_options(command)


def register(app: typer.Typer, measure: registry.Measure) -> None:
    app.command(measure.name, help=measure.help or measure.description)(measure_command(measure))
