"""Models named by their library: `timm:NAME` and `hf:PATH`, weights from `.safetensors`,
and a torchvision stem for other input channels. Nothing is ever downloaded.

- `timm:NAME`: `timm.create_model(NAME, pretrained=False, **arch_args)` (`in_chans`,
  `num_classes`, `img_size`, `embed_dim`, `depth`, ... as timm's model takes them).
- `hf:PATH`: a Hugging Face model from a local folder holding `config.json` (or the
  config.json file itself): the class named first in the config's `architectures` (else
  `AutoModel`; `arch_args` override config fields, e.g. `num_labels`). A folder with weights
  (`model.safetensors`, sharded or not, as `save_pretrained` writes it) loads through that
  class's own `from_pretrained`, offline (`local_files_only=True`), so the checkpoint's key
  names are converted as transformers converts them; a folder without weights is built with
  `from_config`. A pickled `pytorch_model.bin` is refused unless `trust_checkpoint=True`.
  `HF_HUB_OFFLINE` and `TRANSFORMERS_OFFLINE` are set before transformers is imported, remote
  code is never trusted (`trust_remote_code=False`), and a config that names code of its own
  (`auto_map`) is refused.

A model built without weights has random weights drawn from a generator seeded with
`INIT_SEED` (torch's global RNG is left as it was), so the same name and arguments give the
same model in every process. Both libraries come with the optional extra
`pip install manifold-probe[transformers]`; a missing one is an InputError naming it.

Example
-------
>>> module, label = build_named("timm:resnet18", {"num_classes": 10, "in_chans": 1})
"""

from __future__ import annotations

import contextlib
import difflib
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

import torch
from torch import nn

from ..errors import InputError, summary

TIMM_PREFIX, HF_PREFIX = "timm:", "hf:"
INIT_SEED = 0
"""The seed of a named model's random initial weights."""

HF_SAFE_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")
HF_PICKLED_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json")
HF_WEIGHT_FILES = (*HF_SAFE_WEIGHTS, *HF_PICKLED_WEIGHTS)
"""Weight files of a Hugging Face model folder (a single file or a sharded index), in the
order they are looked for: safetensors first."""

EXTRA_HINT = "install the optional extra: pip install 'manifold-probe[transformers]'"


def is_named(arch: str | None) -> bool:
    """Whether `arch` names a timm or Hugging Face model."""
    return isinstance(arch, str) and arch.startswith((TIMM_PREFIX, HF_PREFIX))


def _import(name: str):
    if name == "transformers":  # never reach the Hub, whatever the environment says
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
    try:
        return __import__(name)
    except ImportError:
        raise InputError(f"loading this model needs the {name} package; {EXTRA_HINT}.") from None


def _seeded_build(build, label: str = "the model"):
    """build() with torch's RNG seeded by INIT_SEED, the global RNG restored afterwards, and
    its size checked first (`build_within_memory`)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(INIT_SEED)
        return build_within_memory(build, label)


def machine_memory() -> int | None:
    """Bytes of physical memory of this machine (None where the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def build_within_memory(build, label: str):
    """build(), refused with an InputError about `arch_args` when the model's parameters and
    buffers would take more than this machine's memory: it is first built on the meta device
    (shapes only, nothing allocated) and measured. A build that fails to allocate anyway is the
    same InputError."""
    memory = machine_memory()
    try:
        with torch.device("meta"):
            shapes = build()
    except Exception:  # some constructors cannot run on the meta device: the real build decides
        shapes = None
    if isinstance(shapes, nn.Module) and memory is not None:
        tensors = [*shapes.parameters(), *shapes.buffers()]
        n_bytes = sum(t.numel() * t.element_size() for t in tensors)
        if n_bytes > memory:
            raise _too_large(label, f"{n_bytes / 2**30:,.1f} GiB of weights", memory)
    try:
        return build()
    except MemoryError:
        raise _too_large(label, "more memory than is free", memory) from None
    except RuntimeError as exc:
        if "alloc" not in str(exc).lower():
            raise
        raise _too_large(label, "more memory than is free", memory) from None


def _too_large(label: str, need: str, memory: int | None) -> InputError:
    have = f"this machine's {memory / 2**30:,.1f} GiB" if memory else "the machine's memory"
    return InputError(
        f"{label} needs {need}, more than {have}; check the sizes in it (num_classes, vocab_size, "
        "width, ...).",
        parameter="arch_args",
    )


def _build_timm(name: str, arch_args: Mapping) -> nn.Module:
    timm = _import("timm")
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=3, cutoff=0.6)
        hint = f"close matches: {', '.join(close)}" if close else "see timm.list_models()"
        raise InputError(f"unknown timm model {name!r} ({hint}).")
    label = f"timm:{name} with {dict(arch_args)}"
    try:
        return _seeded_build(lambda: timm.create_model(name, pretrained=False, **arch_args), label)
    except InputError:
        raise
    except (TypeError, ValueError, AssertionError, RuntimeError) as exc:
        raise InputError(f"could not build {label}: {summary(exc)}") from None


MAX_CONFIG_BYTES = 2**20
"""The largest Hugging Face config.json read (configs take a few kB; the parsed JSON takes at
most some 70 times its text, so this bounds what reading one can allocate)."""


def read_config(file: Path) -> dict:
    """The fields of a Hugging Face `config.json`: a JSON object of at most MAX_CONFIG_BYTES."""
    try:
        size = file.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise InputError(
                f"the Hugging Face config {file} is {size:,} bytes, more than the {MAX_CONFIG_BYTES:,} "
                "a config is read up to; give the model's config.json."
            )
        fields = json.loads(file.read_bytes())
    except InputError:
        raise
    except (OSError, ValueError, RecursionError) as exc:
        raise InputError(f"could not read the Hugging Face config {file}: {summary(exc)}.") from None
    if not isinstance(fields, dict):
        raise InputError(
            f"the Hugging Face config {file} holds a JSON {type(fields).__name__}, not an object of "
            'config fields ({"model_type": ..., ...}).'
        )
    if fields.get("auto_map"):
        code = fields["auto_map"]
        named = ", ".join(map(str, code.values())) if isinstance(code, dict) else str(code)
        raise InputError(
            f"the Hugging Face config {file} names code of its own (auto_map: {named[:120]}); mprobe "
            "never runs a model folder's code (remote code is not trusted): save the model with a class that "
            "transformers ships."
        )
    return fields


def _hf_config(path: Path, arch_args: Mapping):
    transformers = _import("transformers")
    file = path / "config.json" if path.is_dir() else path
    if not file.is_file():
        raise InputError(f"no Hugging Face config at {file}: give hf:FOLDER with a config.json.")
    fields = read_config(file)
    model_type = fields.pop("model_type", None)
    try:
        config = transformers.AutoConfig.for_model(model_type, **fields)
    except Exception as exc:  # transformers checks a config's fields as it builds it
        raise InputError(f"could not read the Hugging Face config {file}: {summary(exc)}") from None
    for key, value in arch_args.items():
        try:
            setattr(config, key, value)
        except Exception as exc:
            raise InputError(
                f"{key}={value!r} does not fit the {model_type} config: {summary(exc)}", parameter="arch_args"
            ) from None
    return transformers, config


def _hf_class(transformers, config):
    """The model class a config names first in `architectures` (a class transformers ships),
    else `AutoModel`."""
    names = list(getattr(config, "architectures", None) or [])
    cls = getattr(transformers, names[0], None) if names else None
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        cls = transformers.AutoModel
    return cls


def _build_hf(path: Path, arch_args: Mapping) -> nn.Module:
    transformers, config = _hf_config(path, arch_args)
    cls = _hf_class(transformers, config)
    label = f"{cls.__name__} from {path}" + (f" with {dict(arch_args)}" if arch_args else "")
    try:
        module = _seeded_build(lambda: cls.from_config(config) if cls is transformers.AutoModel
                               else cls._from_config(config), label)  # fmt: skip
    except InputError:
        raise
    except Exception as exc:  # the config's values decide every layer's shape: bad ones are input
        raise InputError(
            f"could not build {label}: {summary(exc)}", parameter="arch_args" if arch_args else None
        ) from None
    return module


def hf_weights(path: Path) -> Path | None:
    """The weight file of a Hugging Face model folder (`HF_WEIGHT_FILES`), or None."""
    if not path.is_dir():
        return None
    return next((path / name for name in HF_WEIGHT_FILES if (path / name).is_file()), None)


@contextlib.contextmanager
def _quiet_transformers(transformers) -> Iterator[None]:
    """transformers' load report and progress bars kept off the terminal (errors still raise)."""
    logging = transformers.utils.logging
    verbosity, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)
        if bars:
            logging.enable_progress_bar()


def load_pretrained(
    path: Path, arch_args: Mapping | None = None, *, state_dict: Mapping | None = None,
    trust_checkpoint: bool = False,
) -> nn.Module:  # fmt: skip
    """The Hugging Face model in folder `path`, in eval mode, with its
    weights, through the model class's own `from_pretrained`: the folder's weights file (or
    `state_dict`, a checkpoint's tensors under the names `save_pretrained` writes), offline,
    without remote code. Weights that leave parameters of the model missing, or hold entries
    or shapes it does not have, are an InputError naming the first few; so is a pickled
    `pytorch_model.bin` without `trust_checkpoint`.

    Example
    -------
    >>> import transformers
    >>> config = transformers.BertConfig(vocab_size=20, hidden_size=8, num_hidden_layers=1,
    ...                                  num_attention_heads=2, intermediate_size=8)
    >>> transformers.BertModel(config).save_pretrained("bert-folder")  # config.json, model.safetensors
    >>> type(load_pretrained(Path("bert-folder"))).__name__
    'BertModel'
    """
    arch_args = dict(arch_args or {})
    if "num_classes" in arch_args:
        arch_args["num_labels"] = arch_args.pop("num_classes")
    weights = hf_weights(path) if state_dict is None else None
    pickled = weights is not None and weights.name in HF_PICKLED_WEIGHTS
    if pickled and not trust_checkpoint:
        raise InputError(
            f"{weights} is a pickle, which can run code when it is read; only if you trust its source, "
            "pass --trust-checkpoint (or save the model again with save_pretrained, which writes "
            "model.safetensors)."
        )
    transformers, config = _hf_config(path, arch_args)
    cls = _hf_class(transformers, config)
    label = f"{cls.__name__} from {path}" + (f" with {dict(arch_args)}" if arch_args else "")
    options = {"config": config, "local_files_only": True, "trust_remote_code": False,
               "use_safetensors": not pickled, "output_loading_info": True}  # fmt: skip
    if state_dict is not None:
        options.update(state_dict=dict(state_dict), use_safetensors=None)
    try:
        with torch.random.fork_rng(devices=[]), _quiet_transformers(transformers):
            torch.manual_seed(INIT_SEED)
            module, loading = cls.from_pretrained(None if state_dict is not None else str(path), **options)
    except InputError:
        raise
    except Exception as exc:  # transformers names what does not fit (sizes, files) in its message
        parameter = "arch_args" if arch_args else None
        raise InputError(f"could not load {label}: {summary(exc)}", parameter=parameter) from None
    problems = [
        f"{kind} {key}"
        for kind in ("missing", "unexpected", "mismatched")
        for key in sorted(map(str, loading.get(f"{kind}_keys") or ()))
    ]
    if problems:
        more = f" and {len(problems) - 3} more" if len(problems) > 3 else ""
        raise InputError(
            f"the weights of {path} do not fit {label} ({'; '.join(problems[:3])}{more}); check the folder's "
            "config.json and --arch-kwargs."
        )
    return module.eval()


def build_named(arch: str, arch_args: Mapping | None = None) -> tuple[nn.Module, str]:
    """(freshly built module in eval mode, description) for `timm:NAME` or `hf:PATH`."""
    arch_args = dict(arch_args or {})
    if arch.startswith(TIMM_PREFIX):
        module = _build_timm(arch[len(TIMM_PREFIX) :], arch_args)
    else:
        path = Path(arch[len(HF_PREFIX) :]).expanduser()
        if "num_classes" in arch_args:  # the Hugging Face name of the number of classes
            arch_args["num_labels"] = arch_args.pop("num_classes")
        module = _build_hf(path, arch_args)
    shown = ", ".join(f"{k}={v}" for k, v in arch_args.items())
    return module.eval(), f"{arch}({shown})" if shown else arch


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a `.safetensors` file (a format that holds tensors only, never code)."""
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise InputError(f"reading {path} needs the safetensors package; {EXTRA_HINT}.") from None
    try:
        return load_file(str(path))
    except Exception as exc:
        raise InputError(f"could not read safetensors file {path}: {exc!s:.200}") from None


def set_in_channels(module: nn.Module, channels: int) -> nn.Module:
    """`module` with its first nn.Conv2d (a torchvision stem: ResNet's `conv1`, ViT's
    `conv_proj`) rebuilt for `channels` input channels, other settings kept; new weights are
    drawn with INIT_SEED. An InputError when the model has no convolution."""
    convs = [(name, conv) for name, conv in module.named_modules() if isinstance(conv, nn.Conv2d)]
    if not convs:
        raise InputError("in_channels needs a model whose stem is an nn.Conv2d; this one has none.")
    name, conv = convs[0]
    if conv.in_channels == channels:
        return module
    new = _seeded_build(lambda: nn.Conv2d(
        channels, conv.out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding,
        dilation=conv.dilation, groups=1, bias=conv.bias is not None, padding_mode=conv.padding_mode,
    ))  # fmt: skip
    parent_name, _, child = name.rpartition(".")
    setattr(module.get_submodule(parent_name), child, new)
    return module
