"""Tilt scheme (angles, dose-symmetric order, exposure), per-tilt CTF and exposure, detector noise."""

import numpy as np
import pytest

from cryoengine.physics.ctf import CtfParameters, ctf_of_frequency, exposure_filter
from cryoengine.physics.tilt import TiltScheme, apply_ctf_and_exposure_to_tilts, draw_detector_noise_tilts


def test_default_scheme_is_plus_minus_60_in_3_degree_steps_dose_symmetric():
    scheme = TiltScheme()
    np.testing.assert_allclose(scheme.tilt_angles_deg, np.arange(-60.0, 60.1, 3.0))
    acquired = scheme.tilt_angles_deg[scheme.acquisition_order]
    np.testing.assert_allclose(acquired[:9], [0, 3, 6, -3, -6, 9, 12, -9, -12])
    assert sorted(scheme.acquisition_order.tolist()) == list(range(41))


def test_pre_exposure_grows_outwards_from_zero_degrees():
    scheme = TiltScheme(dose_per_tilt_e_per_A2=2.5)
    pre = scheme.pre_exposure_e_per_A2
    angles = scheme.tilt_angles_deg
    assert pre[angles == 0.0] == 0.0
    np.testing.assert_allclose(np.sort(pre), 2.5 * np.arange(41))
    for side in (angles > 0, angles < 0):
        order = np.argsort(np.abs(angles[side]))
        assert np.all(np.diff(pre[side][order]) > 0)


def test_asymmetric_range_and_group_size_one():
    scheme = TiltScheme(min_angle_deg=-10.0, max_angle_deg=7.0, step_deg=3.0, group_size=1)
    np.testing.assert_allclose(scheme.tilt_angles_deg, [-10, -7, -4, -1, 2, 5])
    np.testing.assert_allclose(scheme.tilt_angles_deg[scheme.acquisition_order], [-1, 2, -4, 5, -7, -10])


def test_sequential_order():
    scheme = TiltScheme(min_angle_deg=-6.0, max_angle_deg=6.0, order="sequential", dose_per_tilt_e_per_A2=1.0)
    np.testing.assert_allclose(scheme.pre_exposure_e_per_A2, [0, 1, 2, 3, 4])


def test_scheme_geometry():
    geometry = TiltScheme().geometry((9, 11, 13))
    assert geometry.volume_shape_zyx == (9, 11, 13)
    np.testing.assert_allclose(geometry.tilt_angles_deg, TiltScheme().tilt_angles_deg)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"min_angle_deg": -90.0}, "min_angle_deg must lie inside \\(-90, 90\\), got -90"),
        ({"max_angle_deg": 95.0}, "max_angle_deg must lie inside \\(-90, 90\\), got 95"),
        ({"min_angle_deg": 30.0, "max_angle_deg": -30.0}, "30.0 > -30.0"),
        ({"step_deg": 0.0}, "step_deg must be > 0, got 0"),
        ({"order": "bidirectional"}, "'bidirectional'"),
        ({"group_size": 0}, "group_size"),
        ({"dose_per_tilt_e_per_A2": -1.0}, "dose_per_tilt_e_per_A2"),
        ({"min_angle_deg": float("nan")}, "nan"),
    ],
)
def test_scheme_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TiltScheme(**kwargs)


@pytest.mark.parametrize("phase_flip", [False, True])
def test_each_tilt_is_filtered_by_the_ctf_and_its_own_exposure(phase_flip):
    """A plane wave at one frequency comes out scaled by CTF(k)·W(k, N_i), N_i the mid-exposure of tilt i."""
    scheme = TiltScheme(min_angle_deg=-6.0, max_angle_deg=6.0, dose_per_tilt_e_per_A2=20.0)
    ctf = CtfParameters(defocus_um=2.0)
    ny, nx, pixel_A, cycles_y, cycles_x = 12, 30, 10.0, 2, 7
    y, x = np.indices((ny, nx))
    wave = np.cos(2 * np.pi * (cycles_y * y / ny + cycles_x * x / nx))
    projections = np.repeat(wave[None], 5, axis=0).astype(np.float32)
    tilts = apply_ctf_and_exposure_to_tilts(projections, scheme, ctf, pixel_A, phase_flip=phase_flip)
    assert tilts.shape == projections.shape and tilts.dtype == np.float32
    freq_y, freq_x = cycles_y / (ny * pixel_A), cycles_x / (nx * pixel_A)
    transfer = ctf_of_frequency(np.array(freq_y), np.array(freq_x), ctf, phase_flip=phase_flip)
    for tilt, pre_exposure in zip(tilts, scheme.pre_exposure_e_per_A2, strict=True):
        weight = exposure_filter(np.array(np.hypot(freq_y, freq_x)), pre_exposure + 10.0)
        np.testing.assert_allclose(tilt, transfer * weight * wave, atol=1e-5)
    assert abs(transfer) > 0.1  # the chosen frequency is not near a CTF zero


def test_later_tilts_lose_more_high_frequency_power_unless_exposure_filtering_is_off():
    scheme = TiltScheme(min_angle_deg=-3.0, max_angle_deg=3.0, dose_per_tilt_e_per_A2=40.0)
    image = np.random.default_rng(0).standard_normal((32, 40))
    projections = np.repeat(image[None], 3, axis=0).astype(np.float32)
    ctf = CtfParameters(defocus_um=3.0)
    plain = apply_ctf_and_exposure_to_tilts(projections, scheme, ctf, 10.0, exposure_filtering=False)
    np.testing.assert_allclose(plain[0], plain[2], atol=1e-6)
    weighted = apply_ctf_and_exposure_to_tilts(projections, scheme, ctf, 10.0)
    power = [np.sum(np.abs(np.fft.rfft2(tilt)) ** 2) for tilt in weighted]
    order = scheme.acquisition_order  # 0°, +3°, −3°
    assert power[order[0]] > power[order[1]] > power[order[2]]
    with pytest.raises(ValueError, match=r"\(3, ny, nx\)"):
        apply_ctf_and_exposure_to_tilts(projections[:2], scheme, ctf, 10.0)


def test_detector_noise_is_unit_white_gaussian_and_seeded():
    noise = draw_detector_noise_tilts((41, 64, 64), np.random.default_rng(5))
    assert noise.shape == (41, 64, 64) and noise.dtype == np.float32
    assert abs(noise.mean()) < 0.01 and noise.var() == pytest.approx(1.0, abs=0.01)
    spectrum = np.abs(np.fft.rfft2(noise)) ** 2 / (64 * 64)
    assert spectrum[:, :32, :16].mean() == pytest.approx(spectrum[:, :32, 16:].mean(), rel=0.03)  # white
    np.testing.assert_array_equal(noise, draw_detector_noise_tilts((41, 64, 64), np.random.default_rng(5)))
    with pytest.raises(ValueError, match="tilts_shape"):
        draw_detector_noise_tilts((41, 64), np.random.default_rng(5))
