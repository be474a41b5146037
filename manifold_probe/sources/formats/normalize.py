"""Per-channel standardisation of image inputs (`normalize=`): recipe names and (mean, std)
pairs."""

from __future__ import annotations

from ...errors import InputError

NORMALIZATIONS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "mnist": ((0.1307,), (0.3081,)),
    "fashion-mnist": ((0.2860,), (0.3530,)),
}
"""Per-channel (mean, std) of common training recipes, for `normalize=`."""


def normalization(normalize) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """`normalize` (None, a recipe name or a (means, stds) pair) as a (means, stds) pair or None."""
    if normalize is None:
        return None
    if isinstance(normalize, str):
        if normalize not in NORMALIZATIONS:
            raise InputError(
                f"unknown normalization {normalize!r}: use one of {', '.join(NORMALIZATIONS)} "
                "or a (mean, std) pair."
            )
        return NORMALIZATIONS[normalize]
    try:
        mean, std = normalize
        mean = tuple(float(v) for v in mean)
        std = tuple(float(v) for v in std)
    except (TypeError, ValueError):
        raise InputError(
            f"normalize must be a name or a (mean, std) pair of per-channel lists, got {normalize!r}."
        ) from None
    if len(mean) != len(std) or min(std) <= 0:
        raise InputError("normalize needs as many positive stds as means, one per channel.")
    return mean, std


def parse_normalize(text: str | None):
    """`normalize` written as text (a command-line option, a manifest cell) as `load_data` takes
    it: None, a recipe name (or `auto`) as it is, or 2C numbers as (means, stds).

    >>> parse_normalize("0.286,0.353")
    ((0.286,), (0.353,))
    """
    if text is None or not any(ch.isdigit() for ch in str(text)):
        return text
    try:
        values = [float(part) for part in str(text).split(",") if part.strip()]
    except ValueError:
        values = []
    if not values or len(values) % 2:
        raise InputError(f"{text!r}: give a recipe name or per-channel means then stds (an even count).",
                         parameter="normalize")  # fmt: skip
    half = len(values) // 2
    return tuple(values[:half]), tuple(values[half:])


def check_channels(norm, channels: int, spec: str) -> None:
    """Refuse a normalisation with other than 1 or `channels` values per statistic."""
    if norm is not None and len(norm[0]) not in (1, channels):
        raise InputError(
            f"normalize has {len(norm[0])} channel values but {spec} images have {channels} channels."
        )
