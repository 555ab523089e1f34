"""Physics of the density calculation: integral, centre, voxel size, band limit, and an independent check."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from cryoengine.formats.mrc import read_volume
from cryoengine.physics.correlation import best_translation_correlation, pearson_correlation
from cryoengine.physics.density import (
    SCATTERING_PER_KDA_A,
    BoxTooSmallError,
    _frequency_magnitude,
    atoms_to_density,
    lowpass_filter,
    resample_map,
    scale_map_to_mass,
    scattering_weights,
)
from cryoengine.structure.atoms import read_atoms
from cryoengine.structure.phantom import phantom_atoms


@pytest.fixture(scope="module")
def small_protein(shared_data):
    return read_atoms(shared_data / "polnet" / "pdbs" / "1s3x.pdb")


def test_integral_is_the_summed_forward_scattering_of_the_atoms(small_protein):
    # f(0)·occupancy summed over atoms is the integral of their density; the ratio must be the same
    # constant (1, up to gemmi's density cut-off radius) for molecules of different size and composition.
    molecules = [small_protein, phantom_atoms("ring", 160, 5, seed=1), phantom_atoms("cage", 150, 12, seed=2)]
    ratios = []
    for atoms in molecules:
        density = atoms_to_density(atoms, voxel_size_A=8.0, box=32)
        expected = np.sum(scattering_weights(atoms.atomic_number) * atoms.occupancy)
        ratios.append(density.sum(dtype=np.float64) * 8.0**3 / expected)
    assert np.allclose(ratios, 1.0, atol=0.005), ratios


def test_forward_scattering_of_hydrogen_is_the_bohr_radius():
    # Mott–Bethe: f_e(0) = (2 / a0) · Z <r²> / 3 in Å; for hydrogen <r²> = 3 a0², so f_e(0) = a0 = 0.529 Å.
    hydrogen, carbon, nitrogen, oxygen, sulfur, gold = scattering_weights(np.array([1, 6, 7, 8, 16, 79]))
    assert hydrogen == pytest.approx(0.529177, rel=0.01)
    # Screening makes electron f(0) fall from C to O (unlike X-ray f(0) = Z); heavier rows scatter more.
    assert carbon > nitrogen > oxygen
    assert gold > sulfur > carbon


@pytest.mark.parametrize("box", [24, 25])
def test_centre_of_mass_is_at_the_box_centre(small_protein, box):
    density = atoms_to_density(small_protein, voxel_size_A=6.0, box=box)
    centre = ndimage.center_of_mass(np.clip(density, 0, None))
    # clipping negative ringing biases the centre slightly; the unclipped first moment is exact
    zyx = np.indices(density.shape).reshape(3, -1)
    moment = (zyx * density.reshape(-1)).sum(axis=1) / density.sum()
    assert np.allclose(moment, box // 2, atol=0.02), moment
    assert np.allclose(centre, box // 2, atol=0.3), centre


def test_voxel_size_is_honoured(small_protein):
    # The same molecule densified at 5 Å and at 10 Å agrees once the 5 Å map is resampled to 10 Å.
    fine = atoms_to_density(small_protein, voxel_size_A=5.0, box=48, resolution_A=25.0)
    coarse = atoms_to_density(small_protein, voxel_size_A=10.0, box=24, resolution_A=25.0)
    resampled = resample_map(fine, 5.0, 10.0, box=24, resolution_A=25.0)
    assert pearson_correlation(resampled, coarse) > 0.99
    # Values are densities, so they agree in scale too (not only in shape).
    assert resampled.sum() == pytest.approx(coarse.sum(), rel=0.02)
    # A wrong voxel size (a 20 % scale error) is clearly worse: the check can fail.
    wrong = resample_map(fine, 6.0, 10.0, box=24, resolution_A=25.0)
    assert pearson_correlation(wrong, coarse) < 0.97


def test_density_is_band_limited_at_the_stated_resolution():
    atoms = phantom_atoms("blob", 150, 4, seed=3)
    density = atoms_to_density(atoms, voxel_size_A=5.0, box=40, resolution_A=30.0)
    power = np.abs(np.fft.fftn(density)) ** 2
    s = _frequency_magnitude(density.shape, 5.0)
    assert power[s > 1 / 30.0].sum() < 1e-8 * power.sum()
    assert power[(s > 1 / 60.0) & (s < 1 / 40.0)].sum() > 1e-3 * power.sum()


def test_lowpass_filter_shape():
    f = lowpass_filter((16, 17, 18), 10.0, 40.0)
    s = _frequency_magnitude((16, 17, 18), 10.0)
    assert np.all(f[s <= 0.8 / 40] == 1.0)
    assert np.all(f[s >= 1 / 40] == 0.0)
    assert f[0, 0, 0] == 1.0


def test_box_too_small_gives_the_size_that_fits(small_protein):
    with pytest.raises(BoxTooSmallError, match=r"use box ≥ (\d+)") as info:
        atoms_to_density(small_protein, voxel_size_A=10.0, box=8)
    needed = int(info.value.args[0].rsplit("≥ ", 1)[1])
    atoms_to_density(small_protein, voxel_size_A=10.0, box=needed)  # the advice is right


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"voxel_size_A": -1.0, "box": 16}, "voxel_size_A must be positive"),
        ({"voxel_size_A": 10.0, "box": 16, "resolution_A": 12.0}, "finer than Nyquist"),
        ({"voxel_size_A": 10.0, "box": 4}, "box must be at least 8"),
    ],
)
def test_bad_parameters(small_protein, kwargs, message):
    with pytest.raises(ValueError, match=message):
        atoms_to_density(small_protein, **kwargs)


def test_resample_map_centres_and_checks_fit(shared_data):
    volume, voxel_A = read_volume(shared_data / "polnet" / "maps_10A" / "3qm1.mrc")
    out = resample_map(volume, voxel_A, 10.0, box=24)
    zyx = np.indices(out.shape).reshape(3, -1)
    weights = np.clip(out, 0, None).reshape(-1)
    assert np.allclose((zyx * weights).sum(axis=1) / weights.sum(), 12, atol=0.3)
    with pytest.raises(BoxTooSmallError, match="use box ≥"):
        resample_map(volume, voxel_A, 10.0, box=8)
    with pytest.raises(ValueError, match="NaN"):
        resample_map(np.full((8, 8, 8), np.nan), 10.0, 10.0, box=8)


# PolNet (an independent simulator) made its 10 Å maps from the same PDB files, as they are (asymmetric
# unit), with arrays in (z, y, x). Its maps fall off towards Nyquist, so like is compared with like at a
# common 30 Å; measured values (benchmarks/polnet_comparison.py, docs/benchmarks.md) are 0.945–0.985,
# and 0.898–0.963 at the native resolution.
POLNET_FLOOR_AT_30A = 0.93
POLNET_FLOOR_RAW = 0.88


def _lowpass(volume, resolution_A):
    return np.fft.ifftn(np.fft.fftn(volume) * lowpass_filter(volume.shape, 10.0, resolution_A)).real


@pytest.mark.parametrize("entry", ["1bxn", "3cf3", "3qm1", "3j9i"])
def test_agrees_with_polnet(shared_data, entry):
    theirs, voxel_A = read_volume(shared_data / "polnet" / "maps_10A" / f"{entry}.mrc")
    atoms = read_atoms(shared_data / "polnet" / "pdbs" / f"{entry}.pdb", assembly=None)
    ours = atoms_to_density(atoms, voxel_A, box=max(theirs.shape) + 8)
    raw, _ = best_translation_correlation(ours, theirs)
    common, _ = best_translation_correlation(_lowpass(ours, 30.0), _lowpass(theirs, 30.0))
    assert raw > POLNET_FLOOR_RAW
    assert common > POLNET_FLOOR_AT_30A
    # and the comparison discriminates: a different molecule correlates clearly worse
    other, _ = read_volume(
        shared_data / "polnet" / "maps_10A" / ("1s3x.mrc" if entry != "1s3x" else "3j9i.mrc")
    )
    wrong, _ = best_translation_correlation(_lowpass(ours, 30.0), _lowpass(other, 30.0))
    assert wrong < common - 0.1


def test_scale_map_to_mass_sets_the_integral_of_the_given_or_contoured_mass(small_protein):
    ours = atoms_to_density(small_protein, 10.0, 24, 25.0, 2)
    mass_kDa = scattering_weights(small_protein.atomic_number).sum() / SCATTERING_PER_KDA_A
    scaled, used = scale_map_to_mass(250.0 * ours, 10.0, 42.75)  # PolNet units, PolNet's weight
    assert used == 42.75
    np.testing.assert_allclose(scaled.sum() * 1000.0, SCATTERING_PER_KDA_A * 42.75, rtol=1e-5)
    # the atomic map holds 0.988 of Σ f(0) (gemmi's cut-off radius): the same scale within 1.2 %
    np.testing.assert_allclose(scaled.sum(), ours.sum() * 42.75 / mass_kDa, rtol=0.02)
    contoured, guessed_kDa = scale_map_to_mass(250.0 * ours, 10.0)  # no weight: contour at 0.4 of the peak
    assert 0.8 < guessed_kDa / 42.75 < 1.2
    with pytest.raises(ValueError, match="no positive density"):
        scale_map_to_mass(-ours, 10.0)
