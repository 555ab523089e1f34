"""CTF physics: wavelength, zeros at the analytic frequencies, astigmatism, exposure filter, bad input."""

import math

import numpy as np
import pytest

from cryoengine.physics.ctf import (
    CtfParameters,
    critical_exposure_e_per_A2,
    ctf_of_frequency,
    draw_ctf_parameters,
    electron_wavelength_A,
    exposure_filter,
    rfft2_frequencies_per_A,
)


@pytest.mark.parametrize(
    ("voltage_kV", "wavelength_A"), [(300.0, 0.019687), (200.0, 0.025079), (100.0, 0.037014)]
)
def test_relativistic_wavelength(voltage_kV, wavelength_A):
    """λ = 12.2643 / √(V(1 + 0.978466e-6·V)) Å (Williams & Carter table 1.1: 1.97, 2.51, 3.70 pm)."""
    assert electron_wavelength_A(voltage_kV) == pytest.approx(wavelength_A, abs=2e-6)


def analytic_zeros_per_A(defocus_um, voltage_kV, cs_mm, amplitude_contrast, k_max_per_A):
    """Solve ½π·Cs·λ³·q² − π·λ·Δf·q + (nπ − φ_A) = 0 for q = k² on the rising branch of χ."""
    wavelength = 12.2643 / math.sqrt(voltage_kV * 1e3 * (1 + 0.978466e-6 * voltage_kV * 1e3))
    a = 0.5 * math.pi * cs_mm * 1e7 * wavelength**3
    b = math.pi * wavelength * defocus_um * 1e4
    phase = math.asin(amplitude_contrast)
    zeros = []
    for n in range(1, 1000):
        c = n * math.pi - phase
        q = c / b if a == 0 else (b - math.sqrt(b * b - 4 * a * c)) / (2 * a)
        if math.sqrt(q) > k_max_per_A:
            return np.array(zeros)
        zeros.append(math.sqrt(q))
    raise AssertionError("too many zeros")


def sign_change_frequencies(freq, values):
    """Zero crossings of a sampled curve, by linear interpolation between samples of opposite sign."""
    i = np.flatnonzero(np.sign(values[:-1]) * np.sign(values[1:]) < 0)
    return freq[i] - values[i] * (freq[i + 1] - freq[i]) / (values[i + 1] - values[i])


@pytest.mark.parametrize(
    ("defocus_um", "voltage_kV", "cs_mm", "amplitude_contrast"),
    [(2.0, 300.0, 2.7, 0.07), (5.0, 300.0, 2.7, 0.07), (3.5, 200.0, 2.0, 0.1), (1.0, 300.0, 0.0, 0.0)],
)
def test_ctf_zeros_are_at_the_analytic_frequencies(defocus_um, voltage_kV, cs_mm, amplitude_contrast):
    """Every zero up to 1/4 Å⁻¹ within 0.5 % of the closed-form solution (and none extra)."""
    ctf = CtfParameters(
        defocus_um=defocus_um, voltage_kV=voltage_kV, cs_mm=cs_mm, amplitude_contrast=amplitude_contrast
    )
    freq = np.linspace(0.0, 0.25, 200_001)
    measured = sign_change_frequencies(freq, ctf_of_frequency(np.zeros_like(freq), freq, ctf))
    expected = analytic_zeros_per_A(defocus_um, voltage_kV, cs_mm, amplitude_contrast, 0.25)
    assert measured.size == expected.size > 5
    np.testing.assert_allclose(measured, expected, rtol=0.005)


def test_astigmatic_zeros_follow_the_azimuthal_defocus():
    """Along the astigmatism azimuth the defocus is Δf + Δ/2, perpendicular to it Δf − Δ/2."""
    ctf = CtfParameters(defocus_um=3.0, astigmatism_um=0.6, astigmatism_angle_deg=30.0)
    k = np.linspace(0.0, 0.1, 100_001)
    for azimuth_deg, defocus_um in [(30.0, 3.3), (120.0, 2.7)]:
        phi = np.deg2rad(azimuth_deg)
        values = ctf_of_frequency(k * np.sin(phi), k * np.cos(phi), ctf)
        expected = analytic_zeros_per_A(defocus_um, 300.0, 2.7, 0.07, 0.1)
        np.testing.assert_allclose(sign_change_frequencies(k, values), expected, rtol=0.005)


def test_ctf_at_zero_frequency_is_minus_the_amplitude_contrast_and_phase_flip_is_its_magnitude():
    ctf = CtfParameters(defocus_um=2.5, amplitude_contrast=0.07)
    freq_y, freq_x = rfft2_frequencies_per_A((64, 64), pixel_size_A=10.0)
    values = ctf_of_frequency(freq_y, freq_x, ctf)
    assert values.shape == (64, 33)
    assert values[0, 0] == pytest.approx(-0.07)  # protein (positive potential) dark at low frequency
    np.testing.assert_array_equal(ctf_of_frequency(freq_y, freq_x, ctf, phase_flip=True), np.abs(values))


def test_rfft2_frequency_grid():
    freq_y, freq_x = rfft2_frequencies_per_A((5, 8), pixel_size_A=10.0)
    np.testing.assert_allclose(freq_y.ravel(), [0, 0.02, 0.04, -0.04, -0.02])
    np.testing.assert_allclose(freq_x.ravel(), [0, 0.0125, 0.025, 0.0375, 0.05])  # 0.05 = Nyquist at 10 Å


def test_critical_exposure_is_grant_grigorieff_2015():
    """Ne(k) = 0.245·k^−1.665 + 2.81 e⁻/Å² at 300 kV, × 0.8 at 200 kV (eLife 4:e06980, eq. 3)."""
    k = np.array([1 / 40, 1 / 20, 1 / 10, 1 / 4])
    expected_300 = 0.245 * k**-1.665 + 2.81
    np.testing.assert_allclose(critical_exposure_e_per_A2(k, 300.0), expected_300, rtol=1e-12)
    np.testing.assert_allclose(critical_exposure_e_per_A2(k, 200.0), 0.8 * expected_300, rtol=1e-12)
    assert critical_exposure_e_per_A2(np.array([1 / 10]))[0] == pytest.approx(14.138, abs=1e-3)  # by hand
    assert np.isinf(critical_exposure_e_per_A2(np.array([0.0]))[0])


def test_exposure_filter_is_exp_minus_n_over_two_ne():
    k = np.array([0.0, 1 / 30, 1 / 20, 1 / 10])
    for exposure in [0.0, 3.0, 60.0, 120.0]:
        expected = np.exp(-exposure / (2 * (0.245 * k[1:] ** -1.665 + 2.81)))
        weights = exposure_filter(k, exposure, 300.0)
        assert weights[0] == 1.0
        np.testing.assert_allclose(weights[1:], expected, rtol=1e-12)
    stacked = exposure_filter(k, np.array([3.0, 60.0]))
    assert stacked.shape == (2, 4)
    np.testing.assert_allclose(stacked[1], exposure_filter(k, 60.0))
    # 120 e⁻/Å² at 1/20 Å⁻¹: Ne = 0.245·20^1.665 + 2.81 = 38.73 e⁻/Å², weight e^(−120/77.46) = 0.2125
    assert exposure_filter(np.array([1 / 20]), 120.0)[0] == pytest.approx(0.2125, abs=5e-4)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"voltage_kV": 0.0}, "voltage_kV"),
        ({"cs_mm": -1.0}, "cs_mm"),
        ({"amplitude_contrast": 1.0}, "amplitude_contrast"),
        ({"astigmatism_um": -0.1}, "astigmatism_um"),
        ({"defocus_um": 0.2, "astigmatism_um": 1.0}, "underfocus"),
        ({"defocus_um": float("nan")}, "defocus_um must be finite"),
    ],
)
def test_ctf_parameters_reject_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CtfParameters(**kwargs)


def test_bad_exposure_input_is_refused():
    with pytest.raises(ValueError, match="voltage_kV=120"):
        critical_exposure_e_per_A2(np.array([0.1]), 120.0)
    with pytest.raises(ValueError, match="exposure_e_per_A2 must be finite and >= 0, got -1"):
        exposure_filter(np.array([0.1]), -1.0)
    with pytest.raises(ValueError, match="voltage_kV must be > 0"):
        electron_wavelength_A(-300.0)


def test_defocus_draw_is_in_range_and_reproducible():
    draws = [draw_ctf_parameters(np.random.default_rng(seed), astigmatism_max_um=0.5) for seed in range(50)]
    defocus = np.array([d.defocus_um for d in draws])
    assert np.all((defocus >= 2.0) & (defocus <= 5.0)) and defocus.std() > 0.5
    assert all(0 <= d.astigmatism_um <= 0.5 and 0 <= d.astigmatism_angle_deg < 180 for d in draws)
    assert draw_ctf_parameters(np.random.default_rng(7)) == draw_ctf_parameters(np.random.default_rng(7))
    with pytest.raises(ValueError, match="defocus_min_um <= defocus_max_um"):
        draw_ctf_parameters(np.random.default_rng(0), defocus_min_um=5.0, defocus_max_um=2.0)
