"""The `perturb` neighbourhoods of Kaufman & Azencot 2023: images that differ in a few singular values.

For every image and colour channel X = sum_i s_i u_i v_i^T (SVD of the H x W channel):
keep the top `n_top` singular values (the paper: 22 of 32) and switch the `n_toggle`
smallest of those (the paper: 10) on and off in every pattern except all-on, which gives
2^n_toggle - 1 perturbed copies (1023). Propagated through a network, the copies'
activations in a layer form the neighbourhood of the image in that layer, so that every
layer is probed with the same input neighbourhood (`geometry.curvature.curvature_of_neighbourhoods`).

Choices made here (the paper leaves them open):
- One pattern per copy for all channels: copy p switches the same singular-value indices
  off in every channel (each channel with its own SVD), so there are 2^n_toggle - 1 copies
  per image, as in the paper's count of 1023, not (2^n_toggle - 1)^C.
- The unperturbed image (the neighbourhood's centre) is by default the rank-n_top
  reconstruction, the all-on pattern, so that a copy differs from its centre by exactly the
  rank-one terms it switches off; `centre="original"` returns the image itself instead (the
  copies then also differ from it by the discarded tail beyond n_top, the same in every copy).
- Small images: n_top is clamped to min(H, W) and n_toggle to n_top - 1, so the largest
  singular value always stays on (no blank copy). On the built-in 8x8 digits this gives
  n_top = 8, n_toggle = 7: 127 copies. Singular values that are zero (rank-deficient
  images, common in digits) make some copies coincide; the curvature estimator treats such
  neighbourhoods as degenerate only if their rank falls below the tangent dimension.
- Fewer copies: `n_copies` picks a random subset of the patterns without replacement,
  seeded (`numpy.random.default_rng(seed)`), the same subset for every image.

Memory: the copies take N * n_copies * C * H * W elements; call this on small batches of
images (for CIFAR-10 with 1023 copies, one image's copies are 12.6 MB in float32).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from ..errors import InputError
from ..validation import check_positive


@dataclass(frozen=True)
class Perturbations:
    """Perturbed copies of a batch of images and what made them.

    centres: (N, C, H, W) the unperturbed images (see `centre`).
    copies: (N, n_copies, C, H, W) the perturbed images, in the order of `patterns`.
    patterns: (n_copies, n_toggle) bool, True where a toggled singular value stays on;
        column t is singular value number n_top - n_toggle + t (0-based, largest first).
    n_top, n_toggle: the values used after clamping to the image size.
    centre: "reconstruction" (rank-n_top image, the all-on pattern) or "original".
    """

    centres: torch.Tensor
    copies: torch.Tensor
    patterns: np.ndarray
    n_top: int
    n_toggle: int
    centre: str


def toggle_patterns(n_toggle: int, n_copies: int | None = None, seed: int = 0) -> np.ndarray:
    """All on/off patterns of `n_toggle` values but all-on, (2^n_toggle - 1, n_toggle) bool,
    or a seeded random subset of `n_copies` of them (in increasing binary order).

    Row p is the binary expansion of the pattern number, least significant bit first.
    """
    n_toggle = check_positive(n_toggle, name="n_toggle", integer=True)
    if n_toggle > 24:
        raise InputError(f"n_toggle={n_toggle} would make 2^{n_toggle} - 1 copies; use at most 24.")
    n_all = 2**n_toggle - 1
    if n_copies is None:
        numbers = np.arange(n_all)
    else:
        n_copies = check_positive(n_copies, name="n_copies", integer=True)
        if n_copies > n_all:
            raise InputError(
                f"n_copies={n_copies} exceeds the {n_all} patterns of n_toggle={n_toggle}; "
                f"lower n_copies or raise n_toggle."
            )
        numbers = np.sort(np.random.default_rng(seed).choice(n_all, size=n_copies, replace=False))
    bits = (numbers[:, None] >> np.arange(n_toggle)[None, :]) & 1
    return bits.astype(bool)


def svd_perturbations(
    images,
    *,
    n_top: int = 22,
    n_toggle: int = 10,
    n_copies: int | None = None,
    seed: int = 0,
    centre: Literal["reconstruction", "original"] = "reconstruction",
) -> Perturbations:
    """Perturbed copies of `images` (N, C, H, W) by switching singular values of each channel.

    Copy p of image n, channel c: sum_{i < n_top - n_toggle} s_i u_i v_i^T
    + sum_t patterns[p, t] s_{n_top - n_toggle + t} u v^T (of that channel's SVD).
    Computed in float64; returned in the images' floating dtype (float32 for integer input).
    """
    x = torch.as_tensor(images)
    if x.ndim != 4:
        raise InputError(f"images must have shape (N, C, H, W), got {tuple(x.shape)}.")
    if x.numel() == 0:
        raise InputError(f"images must not be empty, got shape {tuple(x.shape)}.")
    if not torch.isfinite(x.to(torch.float64)).all():
        raise InputError("images contain NaN or Inf.")
    if centre not in ("reconstruction", "original"):
        raise InputError(f"centre must be 'reconstruction' or 'original', got {centre!r}.")
    out_dtype = x.dtype if x.is_floating_point() else torch.float32
    n_top = min(check_positive(n_top, name="n_top", integer=True), x.shape[2], x.shape[3])
    n_toggle = min(check_positive(n_toggle, name="n_toggle", integer=True), n_top - 1)
    if n_toggle < 1:
        raise InputError(f"images of size {x.shape[2]}x{x.shape[3]} leave no singular value to toggle.")
    patterns = toggle_patterns(n_toggle, n_copies, seed)

    x64 = x.to(torch.float64)
    u, s, vh = torch.linalg.svd(x64, full_matrices=False)  # (N,C,H,r), (N,C,r), (N,C,r,W)
    n_fixed = n_top - n_toggle
    fixed = (u[..., :n_fixed] * s[..., None, :n_fixed]) @ vh[..., :n_fixed, :]  # (N, C, H, W)
    toggled = slice(n_fixed, n_top)
    # rank-one terms of the toggled values: (N, C, n_toggle, H, W)
    terms = (u[..., toggled] * s[..., None, toggled]).mT[..., :, None] * vh[..., toggled, None, :]
    on = torch.from_numpy(patterns).to(torch.float64)  # (P, n_toggle)
    copies = fixed[:, None] + torch.einsum("pt,ncthw->npchw", on, terms)
    centres = fixed + terms.sum(dim=2) if centre == "reconstruction" else x64
    return Perturbations(
        centres=centres.to(out_dtype),
        copies=copies.to(out_dtype),
        patterns=patterns,
        n_top=n_top,
        n_toggle=n_toggle,
        centre=centre,
    )
