import math

import numpy as np
import pytest
import torch

from aptvit.tasks.fsc import FscCurve, fourier_shell_correlation
from aptvit.tasks.wedge import fourier_frequencies_zyx


def _noise(box, seed):
    return torch.randn(box, box, box, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_fsc_of_a_map_with_itself_is_one_in_every_shell():
    curve = fourier_shell_correlation(_noise(24, 0), _noise(24, 0))
    assert curve.fsc.shape == (13,)
    np.testing.assert_allclose(curve.fsc, 1.0, atol=1e-12)
    np.testing.assert_allclose(curve.frequency, np.arange(13) / 24)


def test_fsc_of_independent_noise_is_zero_within_three_sigma_of_each_shell():
    curve = fourier_shell_correlation(_noise(24, 1), _noise(24, 2))
    shells = slice(1, None)  # the origin shell holds one voxel
    assert np.all(np.abs(curve.fsc[shells]) < 3 / np.sqrt(curve.n_voxels[shells]))
    # And the bound is not vacuous: the spread matches 1/√n.
    z = curve.fsc[shells] * np.sqrt(curve.n_voxels[shells])
    assert 0.5 < z.std() < 1.6


@pytest.mark.parametrize("threshold", [0.5, 0.143])
def test_crossing_against_a_gaussian_low_passed_copy_is_where_the_analytic_curve_crosses(threshold):
    # b = G·a + √(1 − G²)·n with white a, n: the expected FSC is exactly G(k) = exp(−k²/(2σ²)).
    box, sigma = 32, 0.12
    a, noise = _noise(box, 3), _noise(box, 4)
    k = fourier_frequencies_zyx((box,) * 3, dtype=torch.float64).norm(dim=-1)
    gain = torch.exp(-(k**2) / (2 * sigma**2))
    spectrum = gain * torch.fft.fftn(a) + torch.sqrt(1 - gain**2) * torch.fft.fftn(noise)
    b = torch.fft.ifftn(spectrum).real
    curve = fourier_shell_correlation(a, b)
    expected = sigma * math.sqrt(2 * math.log(1 / threshold))
    assert abs(curve.crossing_frequency(threshold) - expected) < 0.5 / box
    assert curve.resolution_A(10.0, threshold) == pytest.approx(10.0 / curve.crossing_frequency(threshold))
    assert abs(curve.resolution_A(10.0, threshold) - 10.0 / expected) < 0.1 * 10.0 / expected


def test_a_curve_that_never_crosses_reports_nyquist_and_bad_input_is_rejected():
    curve = FscCurve(frequency=np.arange(5) / 8, fsc=np.ones(5), n_voxels=np.ones(5, dtype=int))
    assert curve.resolution_A(10.0) == pytest.approx(10.0 / 0.5)
    with pytest.raises(ValueError, match="threshold"):
        curve.crossing_frequency(1.5)
    with pytest.raises(ValueError, match="voxel_size_A"):
        curve.resolution_A(0.0)
    with pytest.raises(ValueError, match="cubic"):
        fourier_shell_correlation(np.zeros((4, 4, 5)), np.zeros((4, 4, 5)))
