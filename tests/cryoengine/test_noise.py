"""Noise: class-blind levels, independent realisations, own-signal SNR, the missing wedge, bad input, CuPy."""

import numpy as np
import pytest
from conftest import HAS_CUPY

from cryoengine.physics.ctf import CtfParameters
from cryoengine.physics.noise import mix_noise_at_snr_levels, reference_noise_scale
from cryoengine.physics.projector import project_volume_to_tilts
from cryoengine.physics.reconstruction import weighted_backproject_tilts_to_volume
from cryoengine.physics.tilt import TiltScheme, apply_ctf_and_exposure_to_tilts, draw_detector_noise_tilts

SNR_LEVELS = np.array([0.1, 0.05, 0.03, 0.01])  # the configured finite levels
TOMOGRAM_ZYX = (21, 40, 44)
CENTRES_ZYX = [(10, 10, 11), (9, 12, 30), (11, 29, 13), (10, 28, 31)]
BOX = 9


@pytest.fixture(scope="module")
def subtomograms():
    """Clean subtomograms and K = 2 independent unit-noise reconstructions cut at the same places."""
    rng = np.random.default_rng(11)
    z, y, x = np.indices(TOMOGRAM_ZYX, dtype=np.float64)
    sample = np.zeros(TOMOGRAM_ZYX)
    for centre in CENTRES_ZYX:
        r2 = (z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2
        sample += np.exp(-0.5 * r2 / 2.0**2)
    scheme = TiltScheme()
    geometry = scheme.geometry(TOMOGRAM_ZYX)
    projections = project_volume_to_tilts(sample, geometry, "cpu")
    signal_tilts = apply_ctf_and_exposure_to_tilts(projections, scheme, CtfParameters(defocus_um=3.0), 10.0)
    clean = weighted_backproject_tilts_to_volume(signal_tilts, geometry)
    noise = [
        weighted_backproject_tilts_to_volume(draw_detector_noise_tilts(geometry.tilts_shape, rng), geometry)
        for _ in range(2)
    ]
    half = BOX // 2
    cut = [tuple(slice(c - half, c - half + BOX) for c in centre) for centre in CENTRES_ZYX]
    return np.stack([clean[s] for s in cut]), np.stack([np.stack([n[s] for n in noise]) for s in cut])


def mix(clean, noise, levels, device="cpu", scale=None, variance=None):
    """Mix with one noise scale for all particles (the reference = the mean clean box) and own = box."""
    variance = clean.astype(np.float64).var(axis=(1, 2, 3)) if variance is None else variance
    if scale is None:
        scale = np.full(len(clean), reference_noise_scale(float(variance.mean()), float(noise.var())))
    return mix_noise_at_snr_levels(clean, noise, scale, np.asarray(levels), variance, device=device)


def test_levels_are_clean_plus_scaled_noise_and_their_snr_is_measured(subtomograms):
    clean, noise = subtomograms
    variance = clean.astype(np.float64).var(axis=(1, 2, 3))
    scale = np.full(4, 0.37)
    noisy, measured = mix(clean, noise, SNR_LEVELS, scale=scale, variance=variance)
    assert noisy.shape == (4, 4, BOX, BOX, BOX) and noisy.dtype == np.float32
    assert measured.shape == (4, 4)
    added = noisy.astype(np.float64) - clean[:, None].astype(np.float64)
    for level, snr in enumerate(SNR_LEVELS):  # level l uses realisation l mod K
        expected = 0.37 / np.sqrt(snr) * noise[:, level % 2].astype(np.float64)
        np.testing.assert_allclose(added[:, level], expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(measured, variance[:, None] / added.var(axis=(2, 3, 4)), rtol=1e-4)


def test_consecutive_levels_carry_independent_noise(subtomograms):
    clean, noise = subtomograms
    noisy, _ = mix(clean, noise, SNR_LEVELS)
    first, second = (noisy[:, level] - clean for level in (0, 1))
    for a, b in zip(first, second, strict=True):
        assert abs(np.corrcoef(a.ravel(), b.ravel())[0, 1]) < 0.15  # one shared realisation gave 0.98


def test_noise_level_does_not_depend_on_the_signal(subtomograms):
    """One scale for every particle: a 9× brighter class gets the same noise, hence a 9× higher SNR."""
    clean, noise = subtomograms
    bright = np.concatenate([clean, 3 * clean])
    both_noise = np.concatenate([noise, noise])
    noisy, measured = mix(bright, both_noise, [0.01])
    added = noisy[:, 0] - bright
    np.testing.assert_allclose(added[:4], added[4:], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(measured[4:, 0], 9 * measured[:4, 0], rtol=1e-3)


def test_reference_scale_is_the_amplitude_at_snr_one():
    assert reference_noise_scale(4.0, 1.0) == 2.0
    with pytest.raises(ValueError, match="unit_noise_variance must be positive"):
        reference_noise_scale(1.0, 0.0)


def test_infinite_snr_is_the_clean_volume(subtomograms):
    clean, noise = subtomograms
    noisy, measured = mix(clean, noise, [np.inf, 0.1])
    np.testing.assert_array_equal(noisy[:, 0], clean)
    assert np.all(np.isinf(measured[:, 0]))


def test_reconstructed_detector_noise_carries_the_missing_wedge():
    """Unit white noise per tilt, reconstructed over ±60°: < 2 % of the sampled power inside the wedge."""
    shape = (31, 17, 37)
    geometry = TiltScheme().geometry(shape)
    noise = weighted_backproject_tilts_to_volume(
        draw_detector_noise_tilts(geometry.tilts_shape, np.random.default_rng(2)), geometry
    )
    window = np.hanning(shape[0])[:, None, None] * np.hanning(shape[1])[:, None] * np.hanning(shape[2])
    power = np.abs(np.fft.fftn(noise * window)) ** 2
    kz = np.fft.fftfreq(shape[0])[:, None, None]
    kx = np.fft.fftfreq(shape[2])[None, None, :]
    elevation_deg = np.broadcast_to(np.degrees(np.arctan2(np.abs(kz), np.abs(kx))), shape)
    ring = np.broadcast_to((np.hypot(kz, kx) > 0.05) & (np.hypot(kz, kx) <= 0.5), shape)
    inside = power[ring & (elevation_deg > 70.0)].mean()
    outside = power[ring & (elevation_deg < 50.0)].mean()
    assert inside / outside < 0.02


@pytest.mark.parametrize(
    ("clean_shape", "noise_shape", "levels", "match"),
    [
        ((2, 4, 4, 4), (2, 2, 4, 4, 5), [0.1], "boxes"),
        ((2, 4, 4, 4), (2, 4, 4, 4), [0.1], r"\(N, K, ...\)"),
        ((4,), (4, 1), [0.1], "N >= 1"),
        ((2, 4, 4, 4), (2, 2, 4, 4, 4), [0.1, 0.0], "values > 0"),
        ((2, 4, 4, 4), (2, 2, 4, 4, 4), [np.nan], "values > 0"),
        ((2, 4, 4, 4), (2, 2, 4, 4, 4), [], "non-empty"),
    ],
)
def test_bad_input_is_refused(clean_shape, noise_shape, levels, match):
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=match):
        mix_noise_at_snr_levels(
            rng.random(clean_shape),
            rng.random(noise_shape),
            np.ones(2),
            np.array(levels),
            np.ones(2),
            device="cpu",
        )


def test_bad_scales_variances_and_non_finite_values_are_refused():
    rng = np.random.default_rng(0)
    clean, noise = rng.random((3, 4, 4, 4)), rng.random((3, 2, 4, 4, 4))
    with pytest.raises(ValueError, match=r"signal_variance .* not positive for particles \[1\]"):
        mix_noise_at_snr_levels(clean, noise, np.ones(3), np.array([0.1]), np.array([1.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match=r"noise_scale must be \(3,\)"):
        mix_noise_at_snr_levels(clean, noise, np.ones(2), np.array([0.1]), np.ones(3))
    clean[1, 0, 0, 0] = np.inf
    with pytest.raises(ValueError, match="finite"):
        mix_noise_at_snr_levels(clean, noise, np.ones(3), np.array([0.1]), np.ones(3), device="cpu")


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUPY, reason="CuPy with a GPU is not available")
def test_cupy_matches_numpy(subtomograms):
    clean, noise = subtomograms
    noisy_cpu, snr_cpu = mix(clean, noise, SNR_LEVELS, device="cpu")
    noisy_gpu, snr_gpu = mix(clean, noise, SNR_LEVELS, device="cuda")
    assert isinstance(noisy_gpu, np.ndarray)
    np.testing.assert_allclose(noisy_gpu, noisy_cpu, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(snr_gpu, snr_cpu, rtol=1e-5)
