"""`mprobe layers`: what can be measured in a model, with output shapes."""

from __future__ import annotations

from typing import Annotated

import typer

from manifold_probe.errors import InputError

from .options import SourceArgs, is_named_arch, source_options
from .output import console


@source_options
def layers_command(
    defaults_only: Annotated[
        bool, typer.Option("--defaults-only", help="List only the default layers.")
    ] = False,
    *,
    source: SourceArgs,
) -> None:
    """List the layers of a model (module paths, a module called twice as name#2), their output shapes
    and kinds (vector, token sequence, spatial map: the kind decides the reductions that apply).

    Layers marked `default` are measured when --layers is not given. The input shape comes
    from the checkpoint when it is known, else from one sample of --data (with the data options
    a measuring command takes: --split, --n-points, --normalize, --input-shape, ...). The
    measuring options (--layers, --reduction, --cache-dir, ...) are accepted and do not change
    the list, so a command line can be carried over from `mprobe id`.
    """
    if source.points is not None:
        raise InputError("lists a model's layers; --points are one layer already.", parameter="points")
    if source.model is None and not is_named_arch(source.arch):
        raise InputError("give --model (a checkpoint) or --arch timm:NAME/hf:FOLDER to list its layers.")
    import manifold_probe as mp
    from manifold_probe.report.tables import layers_table

    module = source.load_model()
    info = mp.model_info(module)
    traced_on = None if info.input_shape is not None else source.load_data(module)
    infos = mp.list_layers(module, traced_on)
    console.print(layers_table(infos, title=f"layers of {info.description}", defaults_only=defaults_only))


def register(app: typer.Typer) -> None:
    app.command("layers")(layers_command)
