"""The layout of each layer's spatial maps: detected, or given by the caller (`layout=`).

A spatial map is `channels_first` (C, H, W: torch's convolutions) or `channels_last`
(H, W, C: timm's Swin stages, the norm and MLP inside a ConvNeXt block). `layers.detect_layouts`
reads it from the module types of one forward pass; a `layout` plan overrides it:

- `auto` (the default): the detected layout of every layer;
- `channels_first` or `channels_last`: that layout for every spatial map;
- a dict {layer name or glob: layout, "default": layout}, or command-line items `LAYOUT` and
  `PATTERN=LAYOUT` (`--layout 'layers.*=channels_last'`).

The layout decides what `avgpool` averages (the spatial axes, whichever they are) and is
recorded per layer in the result's `source.layouts`.

Example
-------
>>> resolve_layouts({"layers.*": "channels_last"}, {"layers.0": "channels_first", "head": ""})
{'layers.0': 'channels_last', 'head': ''}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..errors import InputError
from .patterns import layer_matches
from .reductions import LAYOUTS

AUTO = "auto"


def parse_layout(value: str) -> str:
    """`auto`, `channels_first` or `channels_last` (case, spaces and `-` for `_` forgiven)."""
    text = str(value).strip().lower().replace("-", "_")
    if text not in (AUTO, *LAYOUTS):
        raise InputError(
            f"unknown layout {value!r}: use auto, channels_first or channels_last.", parameter="layout"
        )
    return text


def parse_layout_options(options: Sequence[str]) -> str | dict[str, str]:
    """Repeated command-line items as a plan: `LAYOUT` sets the default, `PATTERN=LAYOUT`
    one layer or glob (comma-separated items too).

    >>> parse_layout_options(["layers.*=channels_last"])
    {'layers.*': 'channels_last'}
    """
    plan: dict[str, str] = {}
    for item in (part.strip() for option in options for part in str(option).split(",")):
        key, sep, value = item.partition("=")
        key, value = (key.strip(), value) if sep else ("default", key)
        if not key:
            raise InputError(f"{item!r} has no layer before '='; use LAYER=LAYOUT.", parameter="layout")
        plan[key] = parse_layout(value)
    return plan.get("default", AUTO) if set(plan) <= {"default"} else plan


def resolve_layouts(plan: str | Mapping[str, str] | Sequence[str] | None,
                    detected: Mapping[str, str]) -> dict[str, str]:  # fmt: skip
    """The layout of each layer: `detected` maps a layer to its detected layout ("" for a layer
    that gives no spatial map, which keeps ""), `plan` overrides it (see the module docstring).
    A pattern that matches none of the layers is an InputError (a typo, almost always)."""
    if plan is None:
        plan = AUTO
    if isinstance(plan, (list, tuple)):
        plan = parse_layout_options(plan)
    if isinstance(plan, str):
        plan = {"default": plan}
    if not isinstance(plan, Mapping):
        raise InputError(f"must be a layout or a dict, got {type(plan).__name__}.", parameter="layout")
    given = {str(key): parse_layout(value) for key, value in plan.items()}
    default = given.pop("default", AUTO)
    for key in given:
        if not any(layer_matches(name, key) for name in detected):
            raise InputError(f"given for {key!r}, which matches none of the selected layers; fix the name.",
                             parameter="layout")  # fmt: skip
    result = {}
    for name, layout in detected.items():
        chosen = given.get(name) or next((v for k, v in given.items() if layer_matches(name, k)), default)
        result[name] = layout if not layout or chosen == AUTO else chosen
    return result
