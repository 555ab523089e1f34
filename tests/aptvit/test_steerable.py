"""Rotation equivariance of the steerable convolution and invariance of the phase selector on the grid."""

import itertools
import math

import pytest
import torch
from e3nn import o3
from torch import nn

from aptvit.models import (
    AdaptivePhaseSampler,
    NormScorer,
    SteerableConv3d,
    SteerableScorer,
    phase_offsets_zyx,
    polyphase_components,
)
from aptvit.models.steerable import centring_scores, component_power_spectra


def grid_rotations():
    """The 24 rotations of the voxel grid as (axis permutation, axes to flip), identity first."""
    rotations = []
    for perm in itertools.permutations(range(3)):
        for flips in itertools.product((False, True), repeat=3):
            matrix = torch.zeros(3, 3)
            for row, col in enumerate(perm):
                matrix[row, col] = -1.0 if flips[row] else 1.0
            if torch.linalg.det(matrix) > 0:
                rotations.append((perm, flips))
    assert len(rotations) == 24 and rotations[0] == ((0, 1, 2), (False, False, False))
    return rotations


ROTATIONS = grid_rotations()


def rotate_grid(volume, rotation):
    """Rotate the last three axes of ``volume`` (exact: a permutation and flips of voxels)."""
    perm, flips = rotation
    lead = volume.ndim - 3
    rotated = volume.permute(*range(lead), *(lead + axis for axis in perm))
    flip_dims = [lead + axis for axis, flip in enumerate(flips) if flip]
    return rotated.flip(flip_dims) if flip_dims else rotated


def rotation_matrix(rotation, size=5):
    """The matrix M of ``rotate_grid`` on centred (z, y, x) voxel coordinates: out[M r] = in[r]."""
    centred = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    coords = torch.stack(torch.meshgrid(centred, centred, centred, indexing="ij"))  # (3, s, s, s)
    moved = rotate_grid(coords, rotation)  # moved[:, j] = coords of the voxel that lands on j = M^-1 j
    inverse = torch.linalg.lstsq(coords.reshape(3, -1).T, moved.reshape(3, -1).T).solution.T
    return torch.linalg.inv(inverse).round()


def rotate_field(field, irreps, rotation):
    """Rotate a steerable field `(N, irreps.dim, d, h, w)`: move the voxels and rotate each feature vector."""
    wigner = irreps.D_from_matrix(rotation_matrix(rotation)).to(field.dtype)
    return torch.einsum("ij,njzyx->nizyx", wigner, rotate_grid(field, rotation))


def component_permutation(size, patch_size, rotation):
    """perm[k'] = the component of the original that component k' of the rotated volume holds."""
    axis = torch.arange(size) % patch_size
    ids = axis[:, None, None] * patch_size**2 + axis[None, :, None] * patch_size + axis[None, None, :]
    components = polyphase_components(rotate_grid(ids, rotation)[None, None], patch_size)[0, :, 0]
    perm = components.flatten(1)[:, 0]
    assert torch.equal(components, perm[:, None, None, None].expand_as(components))  # pure components
    assert torch.equal(perm.sort().values, torch.arange(patch_size**3))
    return perm


def test_rotation_matrices_are_the_24_proper_signed_permutations():
    matrices = {tuple(rotation_matrix(rotation).flatten().tolist()) for rotation in ROTATIONS}
    assert len(matrices) == 24
    for matrix in matrices:
        assert torch.linalg.det(torch.tensor(matrix).reshape(3, 3)) == pytest.approx(1.0)


@pytest.mark.parametrize("kernel_size", [3, 5])
def test_steerable_conv_is_equivariant_to_grid_rotations(kernel_size):
    torch.manual_seed(0)
    irreps_in, irreps_out = o3.Irreps("2x0e + 1x1o + 1x2e"), o3.Irreps("1x0e + 2x1o + 1x2e + 1x1e")
    conv = SteerableConv3d(irreps_in, irreps_out, kernel_size=kernel_size).double()
    field = torch.randn(2, irreps_in.dim, 7, 7, 7, dtype=torch.float64)
    with torch.no_grad():
        output = conv(field)
        errors = [
            (conv(rotate_field(field, irreps_in, rotation)) - rotate_field(output, irreps_out, rotation))
            .abs()
            .max()
            for rotation in ROTATIONS
        ]
    # e3nn builds some constants (Clebsch-Gordan coefficients, radial grid) in float32, so float32
    # round-off is the floor even in float64.
    assert max(errors) < 1e-6 * output.abs().max()
    # The check can fail: the same convolution without Wigner matrices on the features is not equivariant.
    scalar_irreps = o3.Irreps(f"{irreps_in.dim}x0e"), o3.Irreps(f"{irreps_out.dim}x0e")
    with torch.no_grad():
        naive = conv(rotate_field(field, scalar_irreps[0], ROTATIONS[5]))
    assert (
        naive - rotate_field(output, scalar_irreps[1], ROTATIONS[5])
    ).abs().max() > 1e-2 * output.abs().max()


def test_steerable_conv_commutes_with_circular_shifts():
    torch.manual_seed(1)
    conv = SteerableConv3d("1x0e", "2x0e + 1x1o")
    field = torch.randn(2, 1, 5, 6, 7)
    shift = (2, -3, 4)
    torch.testing.assert_close(
        conv(torch.roll(field, shift, dims=(2, 3, 4))), torch.roll(conv(field), shift, dims=(2, 3, 4))
    )


@pytest.mark.parametrize("kwargs", [{"kernel_size": 4}, {"kernel_size": 1}, {"lmax": -1}])
def test_steerable_conv_rejects_uncentred_kernels(kwargs):
    with pytest.raises(ValueError):
        SteerableConv3d("1x0e", "1x0e", **kwargs)


def test_steerable_scorer_is_invariant_to_grid_rotations_and_shifts():
    torch.manual_seed(2)
    scorer = SteerableScorer().eval()
    volumes = torch.randn(4, 1, 6, 6, 6)  # patch_size 1: the one component is the volume
    with torch.no_grad():
        scores = scorer(volumes, 1)
        for rotation in ROTATIONS:
            torch.testing.assert_close(
                scorer(rotate_grid(volumes, rotation), 1), scores, rtol=1e-5, atol=1e-6
            )
        torch.testing.assert_close(scorer(torch.roll(volumes, (1, 2, 3), dims=(2, 3, 4)), 1), scores)


def test_scorer_scores_each_component_as_if_alone():
    torch.manual_seed(3)
    scorer = SteerableScorer(in_chans=2).double()
    volume = torch.randn(2, 2, 8, 12, 4, dtype=torch.float64)
    components = polyphase_components(volume, 2)  # (B, 8, C, 4, 6, 2)
    alone = scorer(components.flatten(0, 1), 1).reshape(2, 8)
    torch.testing.assert_close(scorer(volume, 2), alone)


@pytest.mark.parametrize(
    ("shape", "patch_size"), [((8, 8, 8), 2), ((6, 10, 12), 2), ((3, 5, 6), 1), ((8, 8, 8), 4)]
)
def test_component_power_spectra_sum_like_the_full_spectra(shape, patch_size):
    torch.manual_seed(6)
    volume = torch.randn(2, 3, *shape, dtype=torch.float64)
    power, magnitudes = component_power_spectra(volume, patch_size)
    components = polyphase_components(volume, patch_size)  # (B, p³, C, d, h, w)
    component_shape = components.shape[-3:]
    # Any W with W(f) = W(-f) that is constant on sign flips of each axis, here a function of |f|.
    sizes = torch.tensor(component_shape, dtype=torch.float64)
    weight = (magnitudes / sizes).square().sum(dim=1).sqrt()
    spectrum = torch.fft.fftn(components, dim=(3, 4, 5)).abs().square() / math.prod(component_shape)
    grid = torch.stack(torch.meshgrid(*[torch.arange(n) for n in component_shape], indexing="ij"), dim=-1)
    folded = torch.minimum(grid, sizes.long() - grid).double()
    full_weight = (folded / sizes).square().sum(dim=-1).sqrt()
    expected = (spectrum * full_weight).sum(dim=(3, 4, 5)).transpose(1, 2)  # (B, C, p³)
    torch.testing.assert_close(weight @ power, expected)
    torch.testing.assert_close(power.sum(dim=2), components.square().sum(dim=(3, 4, 5)).transpose(1, 2))
    # The autograd path (a volume that requires grad) computes the same power.
    assert torch.equal(component_power_spectra(volume.requires_grad_(), patch_size)[0], power)


@pytest.mark.parametrize("shape", [(4, 4, 4), (3, 5, 6), (8, 8, 8), (2, 4, 12)])
def test_scorer_energies_are_the_steerable_convolution_energies(shape):
    # Parseval: the Fourier-space energy equals the circular convolution's mean squared irrep norm.
    torch.manual_seed(8)
    scorer = SteerableScorer(in_chans=2, irreps_hidden="2x0e + 1x1o + 2x2e", kernel_size=3).double()
    field = torch.randn(3, 2, *shape, dtype=torch.float64)
    power, _ = component_power_spectra(field, 1)
    energies = scorer.spectral_weights(shape) @ power / math.prod(shape)  # (N, C, irreps, 1)
    convolved = scorer.conv(field.flatten(0, 1)[:, None]).square()  # each input channel on its own
    summed = convolved.new_zeros(6, scorer.num_energies, *shape).index_add_(1, scorer.irrep_index, convolved)
    # e3nn's float32 constants make the kernel equivariant, hence W constant on each orbit, to ~1e-7.
    torch.testing.assert_close(
        energies.flatten(0, 1)[..., 0], summed.mean(dim=(2, 3, 4)), rtol=1e-6, atol=1e-9
    )


def test_every_scorer_parameter_gets_a_gradient():
    torch.manual_seed(9)
    scorer = SteerableScorer()
    scorer(torch.randn(5, 1, 8, 8, 8), 2).square().sum().backward()
    for name, parameter in scorer.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


class PlainConvScorer(nn.Module):
    """A non-steerable scorer (random 3×3×3 kernels): shift-invariant but not rotation-invariant."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(1, 4, 3, padding=1, padding_mode="circular")

    def forward(self, volume, patch_size):
        components = polyphase_components(volume, patch_size).flatten(0, 1)
        scores = torch.tanh(self.conv(components)).mean(dim=(2, 3, 4)).sum(dim=1)
        return scores.reshape(volume.shape[0], -1)


def selector_scores_follow_rotation(sampler, volume, rotation):
    """Whether the scores of the rotated input equal the correspondingly permuted scores.

    The scores are standardised over the phases (unit spread), so 1e-5 absolute is 1e-5 of their range.
    """
    perm = component_permutation(volume.shape[-1], sampler.patch_size, rotation)
    with torch.no_grad():
        scores = sampler.score_phases(volume)
        rotated_scores = sampler.score_phases(rotate_grid(volume, rotation))
    return torch.allclose(rotated_scores, scores[:, perm], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("scorer_cls", "patch_size", "invariant"),
    [
        (SteerableScorer, 4, True),
        (SteerableScorer, 2, True),
        (NormScorer, 4, True),
        (PlainConvScorer, 4, False),
    ],
)
def test_selector_scores_are_permuted_by_grid_rotations(scorer_cls, patch_size, invariant):
    torch.manual_seed(3)
    sampler = AdaptivePhaseSampler(patch_size, scorer_cls()).eval()
    volume = torch.randn(2, 1, 4 * patch_size, 4 * patch_size, 4 * patch_size)
    follows = [selector_scores_follow_rotation(sampler, volume, rotation) for rotation in ROTATIONS]
    assert follows[0]  # the identity always does
    if invariant:
        assert all(follows)
    else:
        assert not any(follows[1:])  # the check can fail: a plain convolution breaks it for every rotation


def test_noise_robust_scores_are_permuted_by_grid_rotations():
    # In float64: a low-pass shrinks the phases' score spread against the scores' size, so float32
    # round-off reaches ~1e-4 of the standardised spread (docs/benchmarks.md, "Pre-training").
    torch.manual_seed(3)
    scorer = SteerableScorer(lowpass_sigma_vox=1.5, phase_smoothing_sigma=1.0, centring_weight=1.0)
    sampler = AdaptivePhaseSampler(4, scorer).double().eval()
    volume = torch.randn(2, 1, 16, 16, 16, dtype=torch.float64)
    assert all(selector_scores_follow_rotation(sampler, volume, rotation) for rotation in ROTATIONS)


def test_selected_offset_follows_grid_rotations():
    torch.manual_seed(4)
    sampler = AdaptivePhaseSampler(4, SteerableScorer()).eval()
    volume = torch.randn(3, 1, 16, 16, 16)
    with torch.no_grad():
        best = sampler.score_phases(volume).argmax(dim=1)
        for rotation in ROTATIONS:
            perm = component_permutation(16, 4, rotation)
            rotated_best = sampler.score_phases(rotate_grid(volume, rotation)).argmax(dim=1)
            assert torch.equal(perm[rotated_best], best)


@pytest.mark.parametrize(
    "options", [{"lowpass_sigma_vox": 1.5}, {"phase_smoothing_sigma": 1.0}, {"centring_weight": 1.0}]
)
def test_noise_robust_scores_move_with_circular_shifts(options):
    # Phase k of the input shifted by s is phase (k - s) mod p of the original: with a low-pass before the
    # split, or scores smoothed over the phase torus, the score vector is still cyclically permuted.
    torch.manual_seed(10)
    scorer = SteerableScorer(**options).double()
    volume = torch.randn(2, 1, 12, 12, 12, dtype=torch.float64)
    shift = torch.tensor([1, -2, 5])
    offsets = phase_offsets_zyx(4)
    source = (offsets - shift) % 4
    with torch.no_grad():
        scores = scorer(volume, 4)
        shifted = scorer(torch.roll(volume, tuple(shift.tolist()), dims=(2, 3, 4)), 4)
    torch.testing.assert_close(shifted, scores[:, source[:, 0] * 16 + source[:, 1] * 4 + source[:, 2]])
    assert not torch.allclose(scores, SteerableScorer().double().to(scores)(volume, 4))  # options act


def test_low_pass_power_is_the_power_of_the_low_passed_volume():
    torch.manual_seed(11)
    volume = torch.randn(2, 1, 8, 12, 16, dtype=torch.float64)
    sigma = 1.3
    # Independently: the periodised Gaussian applied by FFT, one axis at a time.
    low_passed = volume
    for axis, size in zip((2, 3, 4), volume.shape[2:], strict=True):
        lag = torch.arange(size, dtype=torch.float64)
        kernel = sum(torch.exp(-((lag + wrap * size) ** 2) / (2 * sigma**2)) for wrap in range(-3, 4))
        transfer = torch.fft.fft(kernel / kernel.sum()).reshape([-1 if d == axis else 1 for d in range(5)])
        low_passed = torch.fft.ifft(torch.fft.fft(low_passed, dim=axis) * transfer, dim=axis).real
    power, _ = component_power_spectra(volume, 4, lowpass_sigma_vox=sigma)
    torch.testing.assert_close(power, component_power_spectra(low_passed, 4)[0])


def test_centring_picks_roll_a_blob_to_the_middle_of_a_patch():
    # A Gaussian blob centred at voxel c (any position on the 16³ torus): the pick k = round(c - p/2) mod p
    # rolls it to c - k, the middle (p/2 = 2) of a patch of 4, whatever the noise-free blob's size.
    axis = torch.arange(16, dtype=torch.float64)
    for centre in [(5, 9, 6), (0, 15, 2), (12, 3, 8)]:
        distance = [torch.minimum((axis - c) % 16, (c - axis) % 16) for c in centre]
        squared = distance[0][:, None, None] ** 2 + distance[1][None, :, None] ** 2 + distance[2] ** 2
        blob = torch.exp(-squared / (2 * 2.0**2))[None, None]
        best = centring_scores(blob, 4, sigma_vox=1.0).argmax(dim=1)
        assert torch.equal(phase_offsets_zyx(4)[best][0], (torch.tensor(centre) - 2) % 4), centre


def test_centring_scores_are_the_centroid_of_the_fourier_low_passed_energy():
    # Independently: the low-pass as the Gaussian transfer function applied by FFT, the energy's circular
    # centroid c and resultant R per axis, and the documented score sum_axes R cos(2π (k - c + p/2) / p).
    torch.manual_seed(12)
    volume = torch.randn(3, 2, 8, 12, 16, dtype=torch.float64)
    sigma, p = 1.3, 4
    transfer = torch.ones((), dtype=torch.float64)
    for axis, size in enumerate(volume.shape[2:]):
        gain = torch.exp(-2 * math.pi**2 * sigma**2 * torch.fft.fftfreq(size, dtype=torch.float64) ** 2)
        transfer = transfer * gain.reshape([-1 if d == axis else 1 for d in range(3)])
    energy = torch.fft.ifftn(torch.fft.fftn(volume, dim=(2, 3, 4)) * transfer, dim=(2, 3, 4)).real
    energy = energy.square().sum(dim=1)  # (B, D, H, W)
    phases = torch.arange(p, dtype=torch.float64)
    expected = torch.zeros(3, p, p, p, dtype=torch.float64)
    for axis, size in enumerate(energy.shape[1:]):
        marginal = energy.sum(dim=[d for d in (1, 2, 3) if d != axis + 1])  # (B, size)
        angle = 2 * math.pi * torch.arange(size, dtype=torch.float64) / size
        harmonic = (marginal * torch.polar(torch.ones_like(angle), angle)).sum(dim=1)
        centroid = torch.angle(harmonic) * size / (2 * math.pi)
        resultant = harmonic.abs() / marginal.sum(dim=1)
        score = resultant[:, None] * torch.cos(2 * math.pi * (phases - centroid[:, None] + p / 2) / p)
        expected = expected + score.reshape([3] + [-1 if d == axis else 1 for d in range(3)])
    torch.testing.assert_close(centring_scores(volume, p, sigma), expected.reshape(3, -1))


def test_steerable_scorer_rejects_wrong_channels():
    with pytest.raises(ValueError):
        SteerableScorer(in_chans=1)(torch.zeros(2, 3, 4, 4, 4), 2)
    with pytest.raises(ValueError):
        SteerableScorer(in_chans=1)(torch.zeros(2, 1, 4, 4, 6), 4)
    with pytest.raises(ValueError):
        SteerableScorer(hidden_dim=0)
    with pytest.raises(ValueError):
        SteerableScorer(lowpass_sigma_vox=-1.0)
    with pytest.raises(ValueError):
        SteerableScorer(phase_smoothing_sigma=-1.0)
    with pytest.raises(ValueError):
        SteerableScorer(centring_weight=1.0, centring_sigma_vox=0.0)
