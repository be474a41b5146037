"""Options shared by several commands, defined once, and how they become library arguments."""

from __future__ import annotations

import dataclasses
import functools
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from manifold_probe.errors import InputError

from .output import err_console

if TYPE_CHECKING:  # the library (torch) loads only when a command runs
    from manifold_probe.extraction.activations import Activations

Model = Annotated[
    str | None,
    typer.Option(
        "--model",
        help="Checkpoint: mprobe's own (from `mprobe train`), a state_dict (with --arch and --num-classes), "
        "a TorchScript archive or a torch.export program (.pt2).",
        show_default=False,
    ),
]
Data = Annotated[
    str,
    typer.Option(
        "--data",
        help="Data spec: digits (built in), npz:PATH (arrays x, y), imagefolder:ROOT, cifar10:ROOT, "
        "cifar100:ROOT, mnist:ROOT, fashion-mnist[:ROOT] (never downloads).",
    ),
]
Points = Annotated[
    Path | None,
    typer.Option(
        "--points",
        help="A point cloud (.npy, N x D) measured as one layer named `points`.",
        show_default=False,
    ),
]
Labels = Annotated[
    Path | None,
    typer.Option("--labels", help="Class labels for --points (.npy, length N).", show_default=False),
]
Arch = Annotated[
    str | None,
    typer.Option(
        "--arch",
        help="Architecture of a bare state_dict or .safetensors file: digits-cnn, digits-mlp, small-resnet, "
        "torchvision:NAME (e.g. torchvision:resnet18), timm:NAME or hf:FOLDER (a local config.json). "
        "Without --model: that model with seeded initial weights (or the hf folder's weights).",
        show_default=False,
    ),
]
# --- models by name (issue 11): --arch-kwargs, --in-channels -------------------------------
ArchArgs = Annotated[
    str | None,
    typer.Option(
        "--arch-kwargs",
        help="Arguments of --arch as JSON: torchvision sizes ('{\"image_size\": 32}'), timm's create_model "
        'arguments (\'{"in_chans": 1, "depth": 4}\'), Hugging Face config fields (\'{"num_labels": 3}\').',
        show_default=False,
    ),
]
InChannels = Annotated[
    int | None,
    typer.Option(
        "--in-channels",
        help="Input channels: rebuilds a torchvision stem (1 for a grayscale ResNet conv1), sets timm's "
        "in_chans, and reads imagefolder data as grayscale (1) or RGB (3).",
        show_default=False,
    ),
]


def parse_arch_args(text: str | None) -> dict:
    """--arch-kwargs as a dict (a JSON object)."""
    import json

    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            f'is not JSON ({exc.msg}); write e.g. {{"img_size": 32}}.', parameter="arch_args"
        ) from None
    if not isinstance(value, dict):
        raise InputError(f"must be a JSON object of named arguments, got {text!r}.", parameter="arch_args")
    return value


def is_named_arch(arch: str | None) -> bool:
    """Whether --arch names a model that can be built without --model."""
    return bool(arch) and arch.startswith(("timm:", "hf:", "torchvision:"))


# -------------------------------------------------------------------------------------------
NumClasses = Annotated[
    int | None,
    typer.Option("--num-classes", help="Number of classes of a bare state_dict.", show_default=False),
]
TrustCheckpoint = Annotated[
    bool,
    typer.Option(
        "--trust-checkpoint",
        help="Allow a whole pickled module. Unpickling runs code from the file: only for files you trust.",
    ),
]
Split = Annotated[str, typer.Option("--split", help="Which split of the data: train or test.")]
NPoints = Annotated[
    int | None,
    typer.Option(
        "--n-points", help="Use a reproducible seeded subset of this many samples.", show_default=False
    ),
]
Normalize = Annotated[
    str | None,
    typer.Option(
        "--normalize",
        help="Standardise image inputs as the model was trained: a recipe (imagenet, cifar10, cifar100, "
        "mnist, fashion-mnist), per-channel means then stds, e.g. 0.286,0.353 (one channel) or "
        "0.49,0.48,0.45,0.25,0.24,0.26 (three), or auto (what an mprobe checkpoint records).",
        show_default=False,
    ),
]
InputShape = Annotated[
    str | None,
    typer.Option(
        "--input-shape",
        help="Reshape every sample to this shape, e.g. 1,28,28 for an N x 784 npz (default: to the "
        "model's input shape when a sample is flat or channel-less and the sizes agree).",
        show_default=False,
    ),
]


def parse_normalize(text: str | None):
    """--normalize as `load_data`'s `normalize` (`sources.formats.normalize.parse_normalize`)."""
    from manifold_probe.sources.formats.normalize import parse_normalize as parse

    return parse(text)


def _check_seed(value: int) -> int:
    from manifold_probe.validation import check_seed  # numpy: loaded when a command runs

    return check_seed(value)


Seed = Annotated[
    int,
    typer.Option(
        "--seed",
        help="Seed for subsets, projections, bootstraps: same seed, same JSON.",
        callback=_check_seed,
    ),
]
Device = Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")]
Layers = Annotated[
    list[str] | None,
    typer.Option(
        "--layers",
        help="Layers by module name or glob (repeat or comma-separate; see `mprobe layers`). "
        "Default: the model's repeated blocks (wherever they sit), its final norm and the logits; "
        "a glob's `*` stays within one dotted level, `**` crosses levels.",
        show_default=False,
    ),
]
Reduction = Annotated[
    list[str] | None,
    typer.Option(
        "--reduction",
        help="Reduction of each layer's output: auto (mean over tokens for token sequences, else none), "
        "none or flatten, avgpool (spatial mean of C x H x W maps), cls, mean (mask-aware), last (last "
        "real token), token:I, or project:N (seeded Gaussian random projection to N dims); LAYER=SPEC "
        "(globs allowed) overrides one layer; repeatable.",
        show_default="auto",
    ),
]
Layout = Annotated[
    list[str] | None,
    typer.Option(
        "--layout",
        help="Layout of spatial maps, which decides what avgpool averages: auto (detected per layer, "
        "shown by `mprobe layers`; timm Swin stages are channels_last, H x W x C), channels_first or "
        "channels_last; LAYER=LAYOUT (globs allowed) for one layer; repeatable.",
        show_default="auto",
    ),
]
BatchSize = Annotated[int, typer.Option("--batch-size", help="Inputs per forward pass.")]
CacheDir = Annotated[
    Path | None,
    typer.Option(
        "--cache-dir", help="Activation cache (default: the user cache directory).", show_default=False
    ),
]
NoCache = Annotated[bool, typer.Option("--no-cache", help="Neither read nor write the activation cache.")]
MaxMemory = Annotated[
    str | None,
    typer.Option(
        "--max-memory",
        help="Bound on resident memory for activations, e.g. 2GB or 500MB; larger layers stream to disk.",
        show_default=False,
    ),
]
JsonOut = Annotated[
    Path | None,
    typer.Option(
        "--json",
        help="Write the result (JSON, schema manifold-probe/result@1); `-` writes it to stdout.",
        show_default=False,
    ),
]
HtmlOut = Annotated[
    Path | None,
    typer.Option("--html", help="Write an interactive, self-contained Plotly page.", show_default=False),
]
PlotlyJs = Annotated[
    str,
    typer.Option(
        "--plotlyjs",
        help="How the --html page gets plotly.js: inline (the page stands alone, about 4.7 MB) or "
        "directory (one shared plotly.min.js beside the page, which must travel with it).",
    ),
]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]

_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}


def parse_memory(text: str | None) -> int | None:
    """'2GB', '500MB', '1GiB' or a number of bytes."""
    if text is None:
        return None
    s = text.strip().upper().replace(" ", "")
    number = s.rstrip("KMGIB")
    unit = s[len(number) :]
    try:
        value = float(number)
    except ValueError:
        value = -1.0
    if unit not in _UNITS or not 0 < value * _UNITS.get(unit, 1) < 2**63:
        raise InputError(f"{text!r} is not a size; write e.g. 2GB, 500MB or 1GiB.", parameter="max_memory")
    return int(value * _UNITS[unit])


def split_list(values: list[str] | None, *, parameter: str | None = None) -> tuple[str, ...] | None:
    """Repeated and comma-separated option values as one tuple (None when the option was not
    given; an option given with nothing in it, `--layers ''`, is an error naming `parameter`)."""
    if values is None:
        return None
    parts = tuple(part.strip() for value in values for part in value.split(",") if part.strip())
    if not parts:
        raise InputError("was given with nothing in it; name at least one.", parameter=parameter)
    return parts


@dataclass(frozen=True)
class SourceArgs:
    """The options that say what to measure: --model with --data, or --points."""

    model: str | None = None
    points: Path | None = None
    labels: Path | None = None
    data: str = "digits"
    arch: str | None = None
    arch_args: str | None = None
    in_channels: int | None = None
    num_classes: int | None = None
    trust_checkpoint: bool = False
    split: str = "train"
    n_points: int | None = None
    normalize: str | None = None
    input_shape: str | None = None
    seed: int = 0
    device: str = "auto"
    layers: list[str] | None = None
    reduction: list[str] | None = None
    layout: list[str] | None = None
    batch_size: int = 256
    cache_dir: Path | None = None
    no_cache: bool = False
    max_memory: str | None = None
    quiet: bool = False
    default_points: int | None = None
    """A command's own cap when --n-points is not given: a seeded subset of at most this many
    samples (not an option: curvature sets it, since its cost grows as N^2 D)."""

    def load_model(self, path: str | None = None):
        """The model of --model (or `path`), through the Python API."""
        import manifold_probe as mp

        return mp.load_model(path or self.model, arch=self.arch, num_classes=self.num_classes,
                             arch_args=parse_arch_args(self.arch_args), in_channels=self.in_channels,
                             trust_checkpoint=self.trust_checkpoint, device=self.device)  # fmt: skip

    def load_data(self, model=None):
        """The data of --data, --split, --n-points, --seed, --normalize, --input-shape, through
        the Python API (for `model`: its training normalisation, its input shape)."""
        import manifold_probe as mp

        channels = self.in_channels if self.data.startswith("imagefolder:") else None
        options = {"split": self.split, "seed": self.seed, "normalize": parse_normalize(self.normalize),
                   "channels": channels, "model": model, "input_shape": self.input_shape}  # fmt: skip
        data = mp.load_data(self.data, n_points=self.n_points, **options)
        cap = self.default_points
        if self.n_points is None and cap is not None and len(data) > cap:
            if not self.quiet:
                err_console.print(f"note: a seeded subset of {cap} of the {len(data)} samples of "
                                  f"{self.data} ({self.split}); --n-points changes it")  # fmt: skip
            data = mp.load_data(self.data, n_points=cap, **options)
        return data

    def load(self, *, min_points: int = 2, classifier: bool = False) -> Activations:
        """Either --model (with --data) or --points: the layers a command measures (with
        `classifier`, the classifier's input captured in the same pass), through the Python API."""
        import manifold_probe as mp

        max_memory = parse_memory(self.max_memory)  # checked whatever is measured
        has_model = self.model is not None or is_named_arch(self.arch)
        if has_model == (self.points is not None):
            raise InputError("give either --model (with --data), --arch timm:NAME/hf:FOLDER, or --points.")
        if self.points is not None:
            return mp.load_points(self.points, self.labels, min_points=min_points)
        model = self.load_model()
        return mp.extract(
            model,
            self.load_data(model),
            layers=split_list(self.layers, parameter="layers"),
            reduction=self.reduction or "auto",
            layout=self.layout or "auto",
            batch_size=self.batch_size,
            cache=None if self.no_cache else (self.cache_dir or True),
            max_memory=max_memory,
            classifier=True if classifier else False,
            seed=self.seed,
            progress=not self.quiet,
        )


_SOURCE_OPTIONS = {
    "model": (Model, None),
    "data": (Data, "digits"),
    "points": (Points, None),
    "labels": (Labels, None),
    "arch": (Arch, None),
    "arch_args": (ArchArgs, None),
    "in_channels": (InChannels, None),
    "num_classes": (NumClasses, None),
    "trust_checkpoint": (TrustCheckpoint, False),
    "split": (Split, "train"),
    "n_points": (NPoints, None),
    "normalize": (Normalize, None),
    "input_shape": (InputShape, None),
    "layers": (Layers, None),
    "reduction": (Reduction, None),
    "layout": (Layout, None),
    "batch_size": (BatchSize, 256),
    "cache_dir": (CacheDir, None),
    "no_cache": (NoCache, False),
    "max_memory": (MaxMemory, None),
    "seed": (Seed, 0),
    "device": (Device, "auto"),
    "quiet": (Quiet, False),
}


def source_options(command=None, *, models: Any = None):
    """Give a command the shared source options (--model, --data, --points, --layers, ...).

    The command declares a parameter `source: SourceArgs` and receives them all in it;
    Typer sees them as ordinary options after the command's own. With `models` (an option
    annotation for a list, e.g. a repeatable --model), the command also declares
    `models: list[str] | None` and receives --model there, `source.model` being None.
    """
    if command is None:
        return functools.partial(source_options, models=models)
    table = dict(_SOURCE_OPTIONS)
    if models is not None:
        table["model"] = (models, None)
    signature = inspect.signature(command, eval_str=True)
    own = [p for p in signature.parameters.values() if p.name not in ("source", "models")]
    shared = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
        for name, (annotation, default) in table.items()
    ]
    params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own] + shared

    @functools.wraps(command)
    def wrapper(**kwargs):
        source = SourceArgs(**{name: kwargs.pop(name) for name in table})
        if models is None:
            return command(source=source, **kwargs)
        return command(source=dataclasses.replace(source, model=None), models=source.model, **kwargs)

    wrapper.__signature__ = signature.replace(parameters=params)
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    return wrapper


Formats = Annotated[
    str,
    typer.Option(
        "--format",
        help="What to write of the --html page, comma-separated: html (the interactive page), svg, pdf, "
        "png (each figure of the page as PATH-stem.EXT, or PATH-stem.N.EXT when it has several; "
        "through headless Chromium, offline), e.g. html,svg,pdf.",
    ),
]
