"""The `perturb` neighbourhoods: counts, patterns, and the exact algebra of switched singular values.

A copy differs from the rank-n_top centre by the rank-one terms s_i u_i v_i^T it switches
off; these are orthogonal (Frobenius), so its energy is the centre's minus the switched-off
s_i^2, and the difference has rank equal to the number switched off.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from manifold_probe.errors import InputError
from manifold_probe.extraction.perturbations import svd_perturbations, toggle_patterns


@pytest.fixture(scope="module")
def images():
    gen = torch.Generator().manual_seed(0)
    return torch.rand(3, 3, 32, 32, generator=gen, dtype=torch.float64)


@pytest.fixture(scope="module")
def full(images):
    return svd_perturbations(images)


def test_count_and_patterns(full, images):
    assert full.copies.shape == (3, 1023, 3, 32, 32)
    assert full.patterns.shape == (1023, 10)
    assert (full.n_top, full.n_toggle) == (22, 10)
    numbers = full.patterns.astype(np.int64) @ (1 << np.arange(10))
    assert len(np.unique(numbers)) == 1023  # all distinct
    assert not full.patterns.all(axis=1).any()  # the all-on pattern is excluded
    assert toggle_patterns(3).shape == (7, 3)


def test_energy_drops_by_the_switched_off_values(full, images):
    s = torch.linalg.svdvals(images)[..., 12:22]  # the toggled values, (N, C, 10)
    off = torch.from_numpy(~full.patterns).to(torch.float64)  # (P, 10)
    centre_energy = full.centres.square().sum(dim=(2, 3))  # (N, C)
    copy_energy = full.copies.square().sum(dim=(3, 4))  # (N, P, C)
    expected = centre_energy[:, None, :] - torch.einsum("pt,nct->npc", off, s.square())
    assert torch.allclose(copy_energy, expected, rtol=1e-11, atol=1e-10)
    # the rank-22 centre keeps exactly the top 22 singular values' energy
    assert torch.allclose(centre_energy, torch.linalg.svdvals(images)[..., :22].square().sum(-1), rtol=1e-12)


def test_same_pattern_in_every_channel(full):
    diff = full.centres[:, None] - full.copies  # (N, P, C, H, W)
    for p in (0, 5, 500, 1022):
        n_off = int((~full.patterns[p]).sum())
        ranks = torch.linalg.matrix_rank(diff[:, p], rtol=1e-9)  # (N, C)
        assert (ranks == n_off).all()


def test_subset_is_reproducible_and_part_of_the_full_set(images, full):
    a = svd_perturbations(images, n_copies=50, seed=1)
    b = svd_perturbations(images, n_copies=50, seed=1)
    c = svd_perturbations(images, n_copies=50, seed=2)
    assert a.copies.shape == (3, 50, 3, 32, 32)
    assert np.array_equal(a.patterns, b.patterns) and torch.equal(a.copies, b.copies)
    assert not np.array_equal(a.patterns, c.patterns)
    numbers = full.patterns.astype(np.int64) @ (1 << np.arange(10))
    picked = a.patterns.astype(np.int64) @ (1 << np.arange(10))
    where = np.searchsorted(numbers, picked)
    assert np.array_equal(numbers[where], picked)
    assert torch.allclose(a.copies, full.copies[:, where], atol=1e-12)


def test_small_images_clamp_the_counts():
    digits = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    result = svd_perturbations(digits)
    assert (result.n_top, result.n_toggle) == (8, 7)
    assert result.copies.shape == (4, 127, 1, 8, 8)
    assert result.copies.dtype == torch.float32
    # the largest singular value always stays on: no copy is blank
    assert (result.copies.square().sum(dim=(2, 3, 4)) > 0).all()


def test_original_centre_and_dtypes(images):
    result = svd_perturbations(images.to(torch.float32), n_toggle=4, centre="original")
    assert torch.equal(result.centres, images.to(torch.float32))
    assert result.copies.dtype == torch.float32 and result.copies.shape[1] == 15
    as_bytes = svd_perturbations((255 * images).to(torch.uint8), n_toggle=3)
    assert as_bytes.copies.dtype == torch.float32


def test_bad_input_is_refused(images):
    with pytest.raises(InputError, match="exceeds"):
        svd_perturbations(images, n_toggle=3, n_copies=8)
    with pytest.raises(InputError, match=r"\(N, C, H, W\)"):
        svd_perturbations(images[0])
    with pytest.raises(InputError, match="centre"):
        svd_perturbations(images, centre="mean")
    with pytest.raises(InputError, match="no singular value"):
        svd_perturbations(torch.rand(2, 1, 1, 5))
