"""`mprobe layers`: what can be measured in a model, with output shapes."""

from __future__ import annotations

from typing import Annotated

import typer

from manifold_probe.errors import InputError

from .options import (
    Arch,
    ArchKwargs,
    Data,
    Device,
    InChannels,
    Model,
    NumClasses,
    TrustCheckpoint,
    is_named_arch,
    parse_arch_kwargs,
)
from .output import console


def layers_command(
    model: Model = None,
    data: Data = "digits",
    arch: Arch = None,
    arch_kwargs: ArchKwargs = None,
    in_channels: InChannels = None,
    num_classes: NumClasses = None,
    trust_checkpoint: TrustCheckpoint = False,
    device: Device = "cpu",
    defaults_only: Annotated[
        bool, typer.Option("--defaults-only", help="List only the default layers.")
    ] = False,
) -> None:
    """List the layers of a model (module paths, a module called twice as name#2), their output shapes
    and kinds (vector, token sequence, spatial map: the kind decides the reductions that apply).

    Layers marked `default` are measured when --layers is not given. The input shape comes
    from the checkpoint when it is known, else from one sample of --data.
    """
    if model is None and not is_named_arch(arch):
        raise InputError("give --model (a checkpoint) or --arch timm:NAME/hf:FOLDER to list its layers.")
    import manifold_probe as mp
    from manifold_probe.report.tables import layers_table

    module = mp.load_model(
        model, arch=arch, num_classes=num_classes, arch_args=parse_arch_kwargs(arch_kwargs),
        in_channels=in_channels, trust_checkpoint=trust_checkpoint, device=device,
    )  # fmt: skip
    info = mp.model_info(module)
    channels = in_channels if data.startswith("imagefolder:") else None
    traced_on = None if info.input_shape is not None else mp.load_data(data, n_points=None, channels=channels)
    infos = mp.list_layers(module, traced_on)
    console.print(layers_table(infos, title=f"layers of {info.description}", defaults_only=defaults_only))


def register(app: typer.Typer) -> None:
    app.command("layers")(layers_command)
