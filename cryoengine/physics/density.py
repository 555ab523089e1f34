"""Electron-scattering density maps: atoms → map with gemmi, or an existing map resampled, centred and boxed.

Both paths give a `(box, box, box)` float32 map, low-passed to a stated resolution, whose centre of
scattering lies on the box centre (index ``box // 2`` on every axis).

One physical scale for every class
----------------------------------
An atomic map is the electron-scattering potential: its integral is Σ f(0) over the atoms (Å·Å³ per
voxel volume). A map read from a file is in whatever units its author chose (PolNet's peak near 250,
ours near 0.15), so before it enters a sample it is rescaled to the potential its *mass* implies:
integral = :data:`SCATTERING_PER_KDA_A` × molecular weight. A protein scatters 165.7 Å per kDa (Σ f(0)
over the atoms of GroEL 1OEL: 165.2, of 1OSM: 166.3, against gemmi's sequence weights), so a class
enters every sample with the contrast of its mass, whatever its source. The molecular weight is the
class's ``molecular_weight_kDa`` when given; otherwise it is the volume enclosed by the contour at
:data:`MASS_CONTOUR_FRACTION` of the map's peak, at protein density 1.35 g/cm³ (0.813 Da/Å³). That
contour is where our own atomic maps of real proteins enclose their mass (0.38-0.46 of the peak at
20-25 Å resolution and 10 Å voxels), so the fallback is good to about ±20 %; give the weight when known.
"""

from __future__ import annotations

import math

import gemmi
import numpy as np
from scipy import ndimage

from cryoengine.structure.atoms import Atoms

__all__ = [
    "MASS_CONTOUR_FRACTION",
    "PROTEIN_DA_PER_A3",
    "SCATTERING_PER_KDA_A",
    "BoxTooSmallError",
    "atoms_to_density",
    "lowpass_filter",
    "resample_map",
    "scale_map_to_mass",
    "scattering_weights",
]

#: Σ f(0) of a protein's atoms per kDa of its mass (Å/kDa); module docstring.
SCATTERING_PER_KDA_A = 165.7
#: Protein density, 1.35 g/cm³, in Da per Å³.
PROTEIN_DA_PER_A3 = 0.813
#: Fraction of a map's peak whose contour encloses the molecule's mass (module docstring).
MASS_CONTOUR_FRACTION = 0.4

#: Largest attenuation, by the extra blur, of content that would alias into the pass band.
_ALIAS_ATTENUATION = 1e-3


class BoxTooSmallError(ValueError):
    """The molecule does not fit in the requested box."""


def scattering_weights(atomic_number: np.ndarray) -> np.ndarray:
    """Forward electron-scattering amplitude f(0) of each atom (Å), i.e. the integral of its density.

    Parameters
    ----------
    atomic_number
        `(N,)` atomic numbers.

    Returns
    -------
    np.ndarray
        `(N,)` float64, from the International Tables C 4.3.2.2 coefficients as tabulated by gemmi.
    """
    table = {
        int(z): float(sum(gemmi.Element(int(z)).c4322.get_coefs()[:5])) for z in np.unique(atomic_number)
    }
    return np.array([table[int(z)] for z in atomic_number], dtype=np.float64)


def lowpass_filter(shape_zyx: tuple[int, int, int], voxel_size_A: float, resolution_A: float) -> np.ndarray:
    """Raised-cosine low-pass on the ``np.fft.fftn`` frequency grid of a volume.

    The filter is 1 below 0.8 / resolution_A and falls as a half cosine to 0 at 1 / resolution_A
    (spherical; corner frequencies beyond it are removed).

    Parameters
    ----------
    shape_zyx
        Volume shape.
    voxel_size_A
        Voxel size (Å).
    resolution_A
        Resolution (Å) at which the filter reaches zero.

    Returns
    -------
    np.ndarray
        `shape_zyx` float64 filter, unshifted (zero frequency at index 0).
    """
    s_A = _frequency_magnitude(shape_zyx, voxel_size_A)
    cutoff, start = 1.0 / resolution_A, 0.8 / resolution_A
    ramp = np.clip((s_A - start) / (cutoff - start), 0.0, 1.0)
    return 0.5 * (1.0 + np.cos(np.pi * ramp))


def _frequency_magnitude(shape_zyx: tuple[int, ...], voxel_size_A: float) -> np.ndarray:
    """`shape_zyx` spatial-frequency magnitude (1/Å) of the unshifted ``fftn`` grid."""
    axes = [np.fft.fftfreq(n, d=voxel_size_A) for n in shape_zyx]
    grids = np.meshgrid(*axes, indexing="ij", sparse=True)
    return np.sqrt(sum(g**2 for g in grids))


def _check_resolution(voxel_size_A: float, resolution_A: float) -> None:
    if voxel_size_A <= 0:
        raise ValueError(f"voxel_size_A must be positive, got {voxel_size_A}")
    if resolution_A < 2 * voxel_size_A * (1 - 1e-9):
        raise ValueError(
            f"resolution_A = {resolution_A} is finer than Nyquist (2 × voxel_size_A = {2 * voxel_size_A})"
        )


def _required_box(half_extent_A: float, margin_A: float, voxel_size_A: float) -> int:
    """Smallest box whose shorter side from the centre voxel (``box // 2``) holds the molecule."""
    return 2 * int(math.ceil((half_extent_A + margin_A) / voxel_size_A - 1e-9)) + 1


def atoms_to_density(
    atoms: Atoms,
    voxel_size_A: float,
    box: int,
    resolution_A: float | None = None,
    oversampling: int = 4,
) -> np.ndarray:
    """Electron-scattering density of a molecule in a cubic box, centred on its centre of scattering.

    gemmi's ``DensityCalculatorE`` puts every atom's density (Mott–Bethe electron scattering factors of the
    International Tables C 4.3.2.2, with the atom's B-factor and occupancy) on a periodic grid
    ``oversampling`` times finer than ``voxel_size_A``, with an extra Gaussian blur B that suppresses what
    would alias. The fine grid is then Fourier-cropped to the voxel size, the blur is divided out, and the
    raised-cosine :func:`lowpass_filter` at ``resolution_A`` is applied. The map integral equals
    ``sum(f(0) · occupancy)`` (Å, times Å³ per voxel), and its centre of mass lies on the box centre.

    Parameters
    ----------
    atoms
        The molecule; coordinates in Å, ``(z, y, x)``.
    voxel_size_A
        Voxel size of the output (Å).
    box
        Edge of the cubic output (voxels).
    resolution_A
        Low-pass resolution (Å); None = Nyquist (``2 * voxel_size_A``).
    oversampling
        Fine-grid factor (≥ 2).

    Returns
    -------
    np.ndarray
        `(box, box, box)` float32 density (Å⁻², i.e. scattering amplitude per Å³), axes ``(z, y, x)``.

    Raises
    ------
    BoxTooSmallError
        If an atom lies closer than half the resolution to the box faces once centred.
    ValueError
        For a non-positive voxel size, a box below 8, or a resolution finer than Nyquist.
    """
    resolution_A = 2 * voxel_size_A if resolution_A is None else resolution_A
    _check_resolution(voxel_size_A, resolution_A)
    if box < 8:
        raise ValueError(f"box must be at least 8 voxels, got {box}")
    if oversampling < 2:
        raise ValueError(f"oversampling must be at least 2, got {oversampling}")

    weights = scattering_weights(atoms.atomic_number) * atoms.occupancy
    centroid_A = weights @ atoms.coords_zyx_A / weights.sum()
    centred_A = atoms.coords_zyx_A - centroid_A
    centre_A = (box // 2) * voxel_size_A
    margin_A = resolution_A / 2
    low_A, high_A = -centre_A + margin_A, (box - 1 - box // 2) * voxel_size_A - margin_A
    outside = (centred_A < low_A) | (centred_A > high_A)
    if outside.any():
        half_extent_A = float(np.abs(centred_A).max())
        raise BoxTooSmallError(
            f"molecule does not fit: it reaches {half_extent_A:.0f} Å from its centre, a box of {box} × "
            f"{voxel_size_A} Å leaves {min(-low_A, high_A):.0f} Å (after a {margin_A:.0f} Å margin); "
            f"use box ≥ {_required_box(half_extent_A, margin_A, voxel_size_A)}"
        )

    fine = box * oversampling
    fine_voxel_A = voxel_size_A / oversampling
    alias_s = (2 * oversampling - 1) / (2 * voxel_size_A)
    blur_A2 = 4 * math.log(1 / _ALIAS_ATTENUATION) / alias_s**2
    grid = _gemmi_density(centred_A + centre_A, atoms, fine, fine * fine_voxel_A, blur_A2)

    # Fourier crop fine → coarse grid: keep the frequencies representable on the coarse grid.
    spectrum = np.fft.fftn(grid)
    keep = np.where(np.arange(box) < (box + 1) // 2, np.arange(box), fine - box + np.arange(box))
    cropped = spectrum[np.ix_(keep, keep, keep)]
    s2 = _frequency_magnitude((box,) * 3, voxel_size_A) ** 2
    cropped *= np.exp(blur_A2 * s2 / 4) * lowpass_filter((box,) * 3, voxel_size_A, resolution_A)
    density = np.fft.ifftn(cropped).real * (box / fine) ** 3
    return density.astype(np.float32)


def _gemmi_density(
    positions_zyx_A: np.ndarray, atoms: Atoms, grid_size: int, cell_A: float, blur_A2: float
) -> np.ndarray:
    """Periodic density `(grid_size,) * 3` (z, y, x) of atoms placed in a cubic P1 cell of edge cell_A."""
    model = gemmi.Model(1)
    chain = gemmi.Chain("A")
    residue = gemmi.Residue()
    residue.name = "UNK"
    elements = {int(z): gemmi.Element(int(z)) for z in np.unique(atoms.atomic_number)}
    for (z, y, x), number, b_iso, occ in zip(
        positions_zyx_A.tolist(),
        atoms.atomic_number.tolist(),
        atoms.b_iso_A2.tolist(),
        atoms.occupancy.tolist(),
        strict=True,
    ):
        atom = gemmi.Atom()
        atom.pos = gemmi.Position(x, y, z)
        atom.element = elements[number]
        atom.b_iso = b_iso
        atom.occ = occ
        residue.add_atom(atom)
    chain.add_residue(residue)
    model.add_chain(chain)

    calculator = gemmi.DensityCalculatorE()
    calculator.grid.set_unit_cell(gemmi.UnitCell(cell_A, cell_A, cell_A, 90, 90, 90))
    calculator.grid.spacegroup = gemmi.find_spacegroup_by_name("P1")
    calculator.grid.set_size(grid_size, grid_size, grid_size)
    calculator.blur = blur_A2
    calculator.d_min = 2 * cell_A / grid_size
    calculator.add_model_density_to_grid(model)
    return np.array(calculator.grid, copy=False).transpose(2, 1, 0).astype(np.float64)


def resample_map(
    volume_zyx: np.ndarray,
    voxel_size_A_in: float,
    voxel_size_A: float,
    box: int,
    resolution_A: float | None = None,
) -> np.ndarray:
    """Resample a density map to a new voxel size and box, centred on its centre of (positive) density.

    The map is low-passed on its own grid (so that nothing aliases at the new voxel size), its centre of
    mass is found, and it is interpolated (cubic B-spline) onto the new grid around that centre.

    Parameters
    ----------
    volume_zyx
        `(nz, ny, nx)` input map.
    voxel_size_A_in
        Its voxel size (Å).
    voxel_size_A
        Output voxel size (Å).
    box
        Output edge (voxels).
    resolution_A
        Low-pass resolution (Å); None = Nyquist of the output (``2 * voxel_size_A``).

    Returns
    -------
    np.ndarray
        `(box, box, box)` float32, values in the input's units (densities, not sums).

    Raises
    ------
    BoxTooSmallError
        If the map's support (values above 2 % of its maximum) does not fit in the box.
    ValueError
        For an empty or non-3D map, non-positive voxel sizes, or a resolution finer than Nyquist.
    """
    resolution_A = 2 * voxel_size_A if resolution_A is None else resolution_A
    _check_resolution(voxel_size_A, resolution_A)
    if voxel_size_A_in <= 0:
        raise ValueError(f"input voxel size must be positive, got {voxel_size_A_in}")
    volume = np.asarray(volume_zyx, dtype=np.float64)
    if volume.ndim != 3 or min(volume.shape) < 2:
        raise ValueError(
            f"a density map must be 3D with at least 2 voxels per axis, got shape {volume.shape}"
        )
    if not np.isfinite(volume).all():
        raise ValueError("density map holds NaN or infinite values")

    filtered = np.fft.ifftn(
        np.fft.fftn(volume) * lowpass_filter(volume.shape, voxel_size_A_in, resolution_A)
    ).real
    positive = np.clip(filtered, 0, None)
    if positive.sum() <= 0:
        raise ValueError("density map has no positive density")
    centre_in = np.array(ndimage.center_of_mass(positive))

    support = np.argwhere(positive > 0.02 * positive.max())
    reach_A = float(np.abs((support - centre_in) * voxel_size_A_in).max())
    room_A = min(box // 2, box - 1 - box // 2) * voxel_size_A
    if reach_A > room_A:
        raise BoxTooSmallError(
            f"map does not fit: its density reaches {reach_A:.0f} Å from its centre, a box of {box} × "
            f"{voxel_size_A} Å leaves {room_A:.0f} Å; use box ≥ {_required_box(reach_A, 0.0, voxel_size_A)}"
        )
    offsets = (np.arange(box) - box // 2) * (voxel_size_A / voxel_size_A_in)
    coords = np.meshgrid(*(centre_in[axis] + offsets for axis in range(3)), indexing="ij")
    out = ndimage.map_coordinates(filtered, coords, order=3, mode="constant", cval=0.0)
    return out.astype(np.float32)


def scale_map_to_mass(
    volume_zyx: np.ndarray, voxel_size_A: float, molecular_weight_kDa: float | None = None
) -> tuple[np.ndarray, float]:
    """Rescale a map so that its integral is the scattering potential of its mass (module docstring).

    Parameters
    ----------
    volume_zyx
        `(nz, ny, nx)` map in any units, positive density = molecule.
    voxel_size_A
        Its voxel size (Å).
    molecular_weight_kDa
        Mass of the molecule; None = from the volume inside the contour at
        :data:`MASS_CONTOUR_FRACTION` of the peak, at protein density.

    Returns
    -------
    volume : np.ndarray
        `(nz, ny, nx)` float32 map with integral ``SCATTERING_PER_KDA_A × molecular_weight_kDa``
        (Å times Å³ per voxel, as :func:`atoms_to_density`).
    molecular_weight_kDa : float
        The mass used.
    """
    volume = np.asarray(volume_zyx, dtype=np.float64)
    if not voxel_size_A > 0:
        raise ValueError(f"voxel_size_A must be positive, got {voxel_size_A}")
    if molecular_weight_kDa is not None and not molecular_weight_kDa > 0:
        raise ValueError(f"molecular_weight_kDa must be positive, got {molecular_weight_kDa}")
    integral = volume.sum()
    if volume.max() <= 0 or integral <= 0:
        raise ValueError("map has no positive density to scale")
    if molecular_weight_kDa is None:
        enclosed_A3 = np.count_nonzero(volume >= MASS_CONTOUR_FRACTION * volume.max()) * voxel_size_A**3
        molecular_weight_kDa = enclosed_A3 * PROTEIN_DA_PER_A3 / 1000.0
    target = SCATTERING_PER_KDA_A * molecular_weight_kDa / voxel_size_A**3
    return (volume * (target / integral)).astype(np.float32), float(molecular_weight_kDa)
