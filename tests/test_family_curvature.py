"""Exact curvature of input families through a model, against answers known in advance.

Geometry (`geometry.exact_curvature`) on embeddings with closed-form second fundamental forms:
the sphere S^2(R) (curvature_sff = 1/R, both principal curvatures 1/R), the ellipsoid M S^2 under
a general linear map M (II_ij = -<s_i, s_j> / |M^+T s| along the unit normal M^+T s / |M^+T s|,
derived in `ellipsoid_sff`; Gaussian curvature by the classical formula for the axis-aligned
case), the flat torus S^1(r1) x S^1(r2) (||II||^2 = 1/r1^2 + 1/r2^2, scalar curvature 0), a helix
and an ellipse (curvature and length). Derivatives through a model (`probes.family_curvature`)
against a hand derivation for W2 tanh(W1 x(theta) + b1) + b2, finite differences on smooth nets,
batch and chunk independence, CPU vs CUDA; the ReLU regime; and the sampled estimator against
the exact value on the same points.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.special
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import jacrev, jvp

from manifold_probe.errors import InputError
from manifold_probe.geometry.curvature import curvature
from manifold_probe.geometry.exact_curvature import curve_length, normal_part, second_fundamental_form
from manifold_probe.probes.family_curvature import family_curvature, layer_derivatives
from manifold_probe.probes.input_families import bilinear_resample, parse_family

RTOL = 1e-6  # the bar for closed forms; float64 rounding here is about 1e-14


def orthonormal(ambient: int, dim: int, seed: int) -> np.ndarray:
    """An ambient x dim matrix with orthonormal columns (a random isometric embedding)."""
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((ambient, dim)))
    return q


def sphere_derivatives(u: np.ndarray, v: np.ndarray):
    """s(u, v) = (sin v cos u, sin v sin u, cos v) and its first (3, 2) and second (3, 2, 2)
    derivatives at each of the n parameter pairs: shapes (n, 3), (n, 3, 2), (n, 3, 2, 2)."""
    su, cu, sv, cv = np.sin(u), np.cos(u), np.sin(v), np.cos(v)
    zero = np.zeros_like(u)
    s = np.stack([sv * cu, sv * su, cv], -1)
    s_u = np.stack([-sv * su, sv * cu, zero], -1)
    s_v = np.stack([cv * cu, cv * su, -sv], -1)
    s_uu = np.stack([-sv * cu, -sv * su, zero], -1)
    s_uv = np.stack([-cv * su, cv * cu, zero], -1)
    s_vv = np.stack([-sv * cu, -sv * su, -cv], -1)
    first = np.stack([s_u, s_v], -1)
    second = np.stack([np.stack([s_uu, s_uv], -1), np.stack([s_uv, s_vv], -1)], -2)
    return s, first, second


def grid_uv(n: int = 7):
    """Parameter pairs away from the poles (where the sphere's chart degenerates)."""
    u, v = np.meshgrid(np.linspace(0.1, 6.0, n), np.linspace(0.3, 2.8, n), indexing="ij")
    return u.reshape(-1), v.reshape(-1)


def linear_image(matrix: np.ndarray, first: np.ndarray, second: np.ndarray):
    """J and K of the map theta -> matrix s(theta)."""
    return np.einsum("Dk,nkd->nDd", matrix, first), np.einsum("Dk,nkde->nDde", matrix, second)


# --- closed forms -----------------------------------------------------------------------


@pytest.mark.parametrize("radius", [0.3, 1.0, 7.0])
def test_sphere_in_r50_has_curvature_one_over_r(radius):
    u, v = grid_uv()
    _, first, second = sphere_derivatives(u, v)
    jac, hess = linear_image(radius * orthonormal(50, 3, seed=1), first, second)
    sff = second_fundamental_form(jac, hess)
    np.testing.assert_allclose(sff.curvature_sff, 1 / radius, rtol=RTOL)
    np.testing.assert_allclose(sff.principal_curvatures[:, 0], 1 / radius, rtol=RTOL)
    np.testing.assert_allclose(sff.normal_weights[:, 0], math.sqrt(2) / radius, rtol=RTOL)
    assert np.all(np.abs(sff.principal_curvatures[:, 1:]) < 1e-9 / radius)  # one curved normal
    np.testing.assert_allclose(sff.volume_element, radius**2 * np.sin(v), rtol=RTOL)
    np.testing.assert_allclose(sff.mean_curvature, 1 / radius, rtol=RTOL)
    np.testing.assert_allclose(sff.scalar_curvature, 2 / radius**2, rtol=RTOL)


def ellipsoid_sff(matrix: np.ndarray, s: np.ndarray, first: np.ndarray) -> np.ndarray:
    """II_ij (n, D, 2, 2) of f = matrix s on the unit sphere, for a full-column-rank matrix.

    The image is the level set |M^+ y|^2 = 1 in the 3-space range(M), whose normal there is
    nu = M^+T s (the gradient's direction). <M s_ij, nu> = <s_ij, M^+ M s> = <s_ij, s> =
    -<s_i, s_j> (differentiate s.s = 1 twice), and every normal vector of the image lies in
    range(M) along nu, so II_ij = -<s_i, s_j> / |nu| * nu / |nu|."""
    nu = s @ np.linalg.pinv(matrix)  # rows: (M^+T s)^T
    length = np.linalg.norm(nu, axis=1)
    metric_s = np.einsum("nki,nkj->nij", first, first)
    return -np.einsum("nij,nD->nDij", metric_s, nu / length[:, None] ** 2)


def test_ellipsoid_under_a_general_linear_map_matches_the_closed_form():
    rng = np.random.default_rng(2)
    matrix = rng.standard_normal((50, 3)) @ np.diag([0.5, 1.0, 3.0])
    u, v = grid_uv()
    s, first, second = sphere_derivatives(u, v)
    jac, hess = linear_image(matrix, first, second)
    expected = ellipsoid_sff(matrix, s, first)
    got = normal_part(jac, hess).numpy()
    scale = np.abs(expected).max(axis=(1, 2, 3), keepdims=True)
    np.testing.assert_allclose(got / scale, expected / scale, atol=RTOL)
    # principal curvatures: eigenvalues of g^-1 II along the inward normal (positive trace)
    sff = second_fundamental_form(jac, hess)
    nu_length = np.linalg.norm(s @ np.linalg.pinv(matrix), axis=1)
    metric_s = np.einsum("nki,nkj->nij", first, first)
    shape = np.linalg.solve(sff.metric, metric_s / nu_length[:, None, None])
    want = np.sort(np.linalg.eigvals(shape).real, axis=1)[:, ::-1]
    np.testing.assert_allclose(sff.principal_curvatures[:, 0], want, rtol=RTOL)
    gaussian = np.linalg.det(metric_s) / (nu_length**2 * np.linalg.det(sff.metric))
    np.testing.assert_allclose(sff.scalar_curvature / 2, gaussian, rtol=RTOL)


def test_axis_aligned_ellipsoid_gaussian_curvature_classical_formula():
    """K = 1 / (a^2 b^2 c^2 (x^2/a^4 + y^2/b^4 + z^2/c^4)^2) at (x, y, z) = (a s1, b s2, c s3)."""
    axes = np.array([0.7, 1.5, 4.0])
    u, v = grid_uv()
    s, first, second = sphere_derivatives(u, v)
    jac, hess = linear_image(orthonormal(50, 3, seed=3) @ np.diag(axes), first, second)
    point = s * axes
    classical = 1 / (np.prod(axes**2) * ((point**2 / axes**4).sum(1)) ** 2)
    sff = second_fundamental_form(jac, hess)
    np.testing.assert_allclose(sff.scalar_curvature / 2, classical, rtol=RTOL)
    np.testing.assert_allclose(np.prod(sff.principal_curvatures[:, 0], axis=1), classical, rtol=RTOL)


def test_product_of_circles_through_an_orthogonal_map():
    r1, r2 = 0.5, 2.0
    u, v = grid_uv()
    zero = np.zeros_like(u)
    tangent_u = np.stack([-r1 * np.sin(u), r1 * np.cos(u), zero, zero], -1)
    tangent_v = np.stack([zero, zero, -r2 * np.sin(v), r2 * np.cos(v)], -1)
    second_uu = np.stack([-r1 * np.cos(u), -r1 * np.sin(u), zero, zero], -1)
    second_vv = np.stack([zero, zero, -r2 * np.cos(v), -r2 * np.sin(v)], -1)
    first = np.stack([tangent_u, tangent_v], -1)
    second = np.stack(
        [np.stack([second_uu, 0 * second_uu], -1), np.stack([0 * second_uu, second_vv], -1)], -2
    )
    jac, hess = linear_image(orthonormal(50, 4, seed=4), first, second)
    sff = second_fundamental_form(jac, hess)
    np.testing.assert_allclose(sff.sff_norm_squared, 1 / r1**2 + 1 / r2**2, rtol=RTOL)
    np.testing.assert_allclose(sff.curvature_sff, math.sqrt((1 / r1**2 + 1 / r2**2) / 2), rtol=RTOL)
    np.testing.assert_allclose(sff.normal_weights[:, :2], np.tile([1 / r1, 1 / r2], (len(u), 1)), rtol=RTOL)
    np.testing.assert_allclose(sff.principal_curvatures[:, 0], np.tile([1 / r1, 0], (len(u), 1)), atol=RTOL)
    np.testing.assert_allclose(sff.principal_curvatures[:, 1], np.tile([1 / r2, 0], (len(u), 1)), atol=RTOL)
    np.testing.assert_allclose(sff.scalar_curvature, 0.0, atol=RTOL)  # the torus is flat
    np.testing.assert_allclose(sff.volume_element, r1 * r2, rtol=RTOL)


def test_helix_curvature_and_length():
    a, b = 1.5, 0.4
    t = np.linspace(0, 2 * np.pi, 33)
    velocity = np.stack([-a * np.sin(t), a * np.cos(t), np.full_like(t, b)], -1)
    acceleration = np.stack([-a * np.cos(t), -a * np.sin(t), 0 * t], -1)
    embed = orthonormal(20, 3, seed=5)
    sff = second_fundamental_form((velocity @ embed.T)[..., None], (acceleration @ embed.T)[..., None, None])
    np.testing.assert_allclose(sff.curvature_sff, a / (a * a + b * b), rtol=RTOL)
    np.testing.assert_allclose(sff.principal_curvatures[:, 0, 0], a / (a * a + b * b), rtol=RTOL)
    length = curve_length(sff.volume_element, t)
    np.testing.assert_allclose(length, 2 * np.pi * math.hypot(a, b), rtol=RTOL)


def test_ellipse_length_by_the_periodic_trapezoidal_rule():
    a, b = 2.0, 0.5
    t = np.linspace(0, 2 * np.pi, 128, endpoint=False)
    speed = np.hypot(a * np.sin(t), b * np.cos(t))
    exact = 4 * a * scipy.special.ellipe(1 - (b / a) ** 2)
    np.testing.assert_allclose(curve_length(speed, t, period=2 * np.pi), exact, rtol=1e-12)
    np.testing.assert_allclose(curve_length(speed[::-1], t[::-1], period=2 * np.pi), exact, rtol=1e-12)
    with pytest.raises(InputError, match="period"):
        curve_length(speed, t, period=1.0)


def test_float32_derivatives_are_accumulated_in_float64():
    """A tangential second derivative 1e7 times the normal one, D = 100,000: in float32 the
    projection would leave an error as large as the normal part itself; in float64 it is
    about 1e-16 x 1e7 of it, and so is the reference's own rounding."""
    rng = np.random.default_rng(6)
    ambient = 100_000
    jac = rng.standard_normal((2, ambient, 1)).astype(np.float32)
    normal = rng.standard_normal((2, ambient)).astype(np.float32)
    hess = (1e4 * jac[..., 0] / np.sqrt(ambient) + 1e-3 * normal / np.sqrt(ambient)).astype(np.float32)
    j64, k64 = jac.astype(np.float64), hess.astype(np.float64)
    tangent = j64[..., 0] / np.linalg.norm(j64[..., 0], axis=1, keepdims=True)
    expected = k64 - (k64 * tangent).sum(1, keepdims=True) * tangent
    got = normal_part(jac, hess[..., None, None]).numpy()[..., 0, 0]
    # the problem's own condition: rounding of order eps x the entries of K (about 30 here)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12 * np.abs(k64).max())
    kappa = np.linalg.norm(expected, axis=1) / (j64[..., 0] ** 2).sum(1)
    np.testing.assert_allclose(
        second_fundamental_form(jac, hess[..., None, None]).curvature_sff, kappa, rtol=1e-8
    )


def test_degenerate_points_give_nan_not_a_number():
    jac = np.zeros((2, 5, 2))
    jac[0, 0, 0], jac[0, 1, 1] = 1.0, 1.0
    jac[1, 0, 0], jac[1, 0, 1] = 1.0, 2.0  # rank 1: no 2-dimensional tangent space
    hess = np.ones((2, 5, 2, 2))
    sff = second_fundamental_form(jac, hess)
    assert sff.degenerate.tolist() == [False, True]
    assert np.isfinite(sff.curvature_sff[0]) and np.isnan(sff.curvature_sff[1])
    with pytest.raises(InputError, match="hessian must have shape"):
        second_fundamental_form(jac, hess[:, :, :1])


# --- input families ----------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:There is a performance drop")  # jacrev of the reference
def test_bilinear_resample_is_grid_sample_with_the_same_derivatives():
    torch.manual_seed(0)
    image = torch.randn(1, 2, 7, 9, dtype=torch.float64)
    grid = torch.rand(3, 5, 6, 2, dtype=torch.float64) * 2.6 - 1.3  # partly outside the image
    reference = F.grid_sample(image.expand(3, -1, -1, -1), grid, align_corners=False)
    np.testing.assert_allclose(bilinear_resample(image, grid), reference, rtol=0, atol=1e-14)
    family = parse_family("rotate-scale:0", image[0, :1][None])  # families keep float32 images
    image = image.float().double()
    theta = torch.tensor([0.13, -0.07], dtype=torch.float64)

    def through_grid_sample(t):
        """The same family by grid_sample: exp(-b) R(-a) sampling matrices, written out."""
        angle, shrink = t[0], torch.exp(-t[1])
        row0 = torch.stack([torch.cos(angle) * shrink, torch.sin(angle) * shrink, 0 * angle])
        row1 = torch.stack([-torch.sin(angle) * shrink, torch.cos(angle) * shrink, 0 * angle])
        g = F.affine_grid(torch.stack([row0, row1])[None], (1, 1, 7, 9), align_corners=False)
        return F.grid_sample(image[:, :1], g, align_corners=False).flatten()

    ours = family(theta[None]).flatten()
    np.testing.assert_allclose(ours, through_grid_sample(theta), rtol=0, atol=1e-14)
    e0 = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    e1 = torch.tensor([[0.0, 1.0]], dtype=torch.float64)
    first = jvp(family.map, (theta[None],), (e0,))[1].flatten()
    second = jvp(lambda t: jvp(family.map, (t,), (e0,))[1], (theta[None],), (e1,))[1].flatten()
    np.testing.assert_allclose(first, jacrev(through_grid_sample)(theta)[:, 0], atol=1e-12)
    np.testing.assert_allclose(second, jacrev(jacrev(through_grid_sample))(theta)[:, 0, 1], atol=1e-12)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("plane:0,1", "needs 3 data indices"),
        ("plane:0,0,1", "three different"),
        ("plane:0,1,99", "out of range"),
        ("rotate-scale:a", "needs 1 data index"),
        ("translate:0", "resamples an image"),
        ("circle:-1", "positive number"),
        ("spiral:1", "unknown input family"),
    ],
)
def test_family_specs_say_what_is_wrong(spec, message):
    with pytest.raises(InputError, match=message):
        parse_family(spec, torch.zeros(4, 10))


def test_circle_family_is_a_great_circle_of_the_stated_radius():
    family = parse_family("circle:0.5", torch.zeros(2, 1, 4, 5), seed=3)
    t = torch.tensor(family.grid(16), dtype=torch.float64)
    x = family(t).reshape(16, -1)
    np.testing.assert_allclose(x.norm(dim=1), math.sqrt(20 * 0.5), rtol=1e-12)
    np.testing.assert_allclose(x[0] @ x[4], 0.0, atol=1e-12)  # t = 0 and pi/2 are orthogonal


# --- derivatives through a model ---------------------------------------------------------


def tanh_net(
    n_in: int = 6, hidden: int = 9, n_out: int = 4, seed: int = 0, gain: float = 1.0
) -> nn.Sequential:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(n_in, hidden), nn.Tanh(), nn.Linear(hidden, n_out))
    with torch.no_grad():
        net[0].weight.mul_(gain)
    return net


def hand_derivatives(net: nn.Sequential, x, x_i, x_j, x_ij):
    """f = W2 tanh(z) + b2, z = W1 x + b1: J_i = W2 (s' W1 x_i) and
    K_ij = W2 (s'' (W1 x_i)(W1 x_j) + s' W1 x_ij), s' = 1 - tanh^2, s'' = -2 tanh (1 - tanh^2)."""
    w1, b1 = net[0].weight.detach().double(), net[0].bias.detach().double()
    w2 = net[2].weight.detach().double()
    z = x @ w1.T + b1
    s = torch.tanh(z)
    ds, d2s = 1 - s**2, -2 * s * (1 - s**2)
    jac_i = (ds * (x_i @ w1.T)) @ w2.T
    hess_ij = (d2s * (x_i @ w1.T) * (x_j @ w1.T) + ds * (x_ij @ w1.T)) @ w2.T
    return jac_i, hess_ij


def test_one_hidden_layer_tanh_net_against_a_hand_derivation_plane():
    net = tanh_net()
    data = torch.randn(5, 6, generator=torch.Generator().manual_seed(1))
    family = parse_family("plane:0,2,4", data)
    theta = np.array([[0.1, 0.7], [0.5, 0.5], [-0.3, 1.2]])
    derivs = layer_derivatives(net, family, theta, layers=["2"])["2"]
    t, points = torch.tensor(theta), data.double()
    tangents = [(points[2] - points[0]).expand(3, -1), (points[4] - points[0]).expand(3, -1)]
    x = points[0] + t[:, :1] * tangents[0] + t[:, 1:] * tangents[1]
    zero = torch.zeros_like(x)
    for i in range(2):
        for j in range(2):
            jac_i, hess_ij = hand_derivatives(net, x, tangents[i], tangents[j], zero)
            np.testing.assert_allclose(derivs.jacobian[..., i], jac_i, rtol=1e-12, atol=1e-14)
            np.testing.assert_allclose(derivs.hessian[..., i, j], hess_ij, rtol=1e-10, atol=1e-13)
    assert not derivs.model_second_is_zero


def test_one_hidden_layer_tanh_net_against_a_hand_derivation_circle():
    """The circle's own second derivative x'' = -x enters through Df(x) x''."""
    net = tanh_net(n_in=12, gain=0.5)
    family = parse_family("circle:0.8", torch.zeros(1, 12), seed=2)
    theta = np.array([[0.0], [1.0], [4.0]])
    derivs = layer_derivatives(net, family, theta, layers=["2"])["2"]
    t = torch.tensor(theta)
    x = family(t)
    velocity = jvp(family.map, (t,), (torch.ones_like(t),))[1]
    jac, hess = hand_derivatives(net, x, velocity, velocity, -x)
    np.testing.assert_allclose(derivs.jacobian[..., 0], jac, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(derivs.hessian[..., 0, 0], hess, rtol=1e-10, atol=1e-13)
    sff = second_fundamental_form(jac[..., None], hess[..., None, None])
    result = family_curvature(net, None, family, layers=["2"], theta=theta)
    np.testing.assert_allclose(result.layers[0].sff_per_theta, sff.curvature_sff, rtol=1e-10)


@pytest.mark.parametrize("activation", [nn.Tanh, nn.GELU])
def test_finite_differences_converge_to_autodiff_on_a_smooth_net(activation):
    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(8, 16), activation(), nn.Linear(16, 16), activation(), nn.Linear(16, 5))
    data = torch.randn(3, 8, generator=torch.Generator().manual_seed(4))
    family = parse_family("plane:0,1,2", data)
    theta = family.grid(9)
    errors = []
    for step in (4e-3, 2e-3):
        derivs = layer_derivatives(net, family, theta, layers=["3", "4"], fd_step=step)
        relative = [float((d.hessian_fd - d.hessian).norm() / d.hessian.norm()) for d in derivs.values()]
        errors.append(max(relative))
    assert errors[0] < 1e-4
    assert 3.0 < errors[0] / errors[1] < 5.0  # second-order convergence: error ~ h^2


def test_batch_and_chunk_independence():
    net = tanh_net(gain=2.0)
    data = torch.randn(3, 6, generator=torch.Generator().manual_seed(5))
    family = parse_family("plane:0,1,2", data)
    theta = family.grid(16)
    together = layer_derivatives(net, family, theta, layers=["1", "2"])
    for row in (0, 7, 15):
        alone = layer_derivatives(net, family, theta[row : row + 1], layers=["1", "2"])
        for name in ("1", "2"):
            np.testing.assert_allclose(
                alone[name].jacobian[0], together[name].jacobian[row], rtol=1e-12, atol=1e-15
            )
            np.testing.assert_allclose(
                alone[name].hessian[0], together[name].hessian[row], rtol=1e-12, atol=1e-15
            )
    one_chunk = family_curvature(net, data, family, layers=["2"], n_grid=16)
    tiny_chunks = family_curvature(net, data, family, layers=["2"], n_grid=16, max_memory=1)
    np.testing.assert_allclose(
        tiny_chunks.layers[0].sff_per_theta, one_chunk.layers[0].sff_per_theta, rtol=1e-12
    )
    assert tiny_chunks.layers[0].length_scale == pytest.approx(one_chunk.layers[0].length_scale, rel=1e-12)


def test_the_model_is_left_as_it_was():
    net = tanh_net()
    net.train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    family_curvature(net, torch.randn(3, 6), "plane:0,1,2", layers=["2"], n_grid=4)
    assert net.training and all(m.training for m in net.modules())
    for key, value in net.state_dict().items():
        assert value.dtype == torch.float32 and torch.equal(value, before[key])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cpu_and_cuda_give_the_same_numbers():
    net = tanh_net(gain=2.0)
    data = torch.randn(3, 6, generator=torch.Generator().manual_seed(6))
    on_cpu = family_curvature(net, data, "plane:0,1,2", layers=["1", "2"], n_grid=36, device="cpu")
    on_gpu = family_curvature(net, data, "plane:0,1,2", layers=["1", "2"], n_grid=36, device="cuda")
    for a, b in zip(on_cpu.layers, on_gpu.layers, strict=True):
        np.testing.assert_allclose(b.sff_per_theta, a.sff_per_theta, rtol=1e-9)
        np.testing.assert_allclose(b.volume_per_theta, a.volume_per_theta, rtol=1e-9)


# --- piecewise-linear models ---------------------------------------------------------------


def small_cnn(activation, pool=nn.MaxPool2d) -> nn.Sequential:
    torch.manual_seed(7)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), activation(), pool(2),
        nn.Flatten(), nn.Linear(64, 10), activation(), nn.Linear(10, 3),
    )  # fmt: skip


def test_relu_net_is_reported_piecewise_linear():
    data = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(8))
    result = family_curvature(small_cnn(nn.ReLU), data, "plane:0,1,2", layers=["0", "2", "6"], n_grid=100)
    conv, pool, out = result.layers
    assert conv.regime == "linear" and conv.curvature_sff == 0.0  # a convolution of a plane: flat
    for layer in (pool, out):
        assert layer.regime == "piecewise-linear" and layer.method == "finite-difference"
        assert layer.curvature_sff_autodiff == 0.0 and layer.curvature_sff > 0
        assert layer.curvature_sff == layer.curvature_sff_fd
        assert "kinks" in layer.details()["meaning"]
    smooth = family_curvature(small_cnn(nn.Tanh), data, "plane:0,1,2", layers=["0", "6"], n_grid=9)
    assert smooth.layers[0].regime == "linear"  # its finite differences were computed: they agree
    assert smooth.layers[0].curvature_sff_fd == pytest.approx(0.0, abs=1e-12)
    assert smooth.layers[1].regime == "smooth" and smooth.layers[1].method == "autodiff"
    assert np.isnan(smooth.layers[1].curvature_sff_fd)  # no finite differences needed
    asked = family_curvature(
        small_cnn(nn.ReLU), data, "plane:0,1,2", layers=["6"], n_grid=9, second_derivative="autodiff"
    )
    assert asked.layers[0].regime == "linear-or-piecewise-linear" and asked.layers[0].curvature_sff == 0.0


def test_finite_difference_curvature_converges_on_a_smoothed_net():
    """Softplus with a large beta is a smoothed ReLU: its finite-difference curvature_sff tends to
    the exact (autodiff) value as the step shrinks, at second order (average pooling: max
    pooling would keep kinks of its own)."""
    data = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(9))
    net = small_cnn(lambda: nn.Softplus(beta=4.0), pool=nn.AvgPool2d)
    values = {}
    for step in (0.004, 0.002):
        layer = family_curvature(
            net,
            data,
            "plane:0,1,2",
            layers=["6"],
            n_grid=16,
            second_derivative="finite-difference",
            fd_step=step,
        ).layers[0]
        assert layer.regime == "smooth" and layer.method == "finite-difference"
        values[step] = (layer.curvature_sff_fd, layer.curvature_sff_autodiff)
    (fd_big, exact), (fd_small, _) = values[0.004], values[0.002]
    assert abs(fd_small - exact) < 1e-3 * exact
    assert 3.0 < abs(fd_big - exact) / abs(fd_small - exact) < 5.0


# --- the sampled estimator on the same points -------------------------------------------------


@pytest.mark.parametrize("gain", [1.0, 2.0])
def test_sampled_estimator_agrees_with_the_exact_value_or_cannot_tell(gain):
    torch.manual_seed(10)
    net = nn.Sequential(nn.Linear(10, 30), nn.Tanh(), nn.Linear(30, 20), nn.Tanh())
    with torch.no_grad():
        net[0].weight.mul_(gain)
        net[2].weight.mul_(gain)
    data = torch.randn(3, 10, generator=torch.Generator().manual_seed(11))
    result = family_curvature(net, data, "plane:0,1,2", layers=["1", "3"], n_grid=1600, keep_points=True)
    measured = 0
    for layer in result.layers:
        sampled = curvature(layer.points.astype(np.float64), 2)
        if sampled.status == "measured":
            low, high = sampled.intervals["curvature_sff"]
            assert low <= layer.curvature_sff <= high, (layer.layer, layer.curvature_sff, low, high)
            measured += 1
    assert measured >= 1  # the comparison was made, not only skipped
