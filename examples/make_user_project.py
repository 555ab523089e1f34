"""Write a small "user project" offline: a 7.84 Å MRC tomogram, its particles as RELION 5 STAR and copick.

The README's import and predict commands run on it.

A clean tomogram is simulated at 10 Å (placement, rendering, projection, CTF and exposure, WBP) from one
asymmetric particle, Fourier-resampled to 7.84 Å (98 → 125 voxels per axis: 980 Å either way) and written
as ``TS_01.mrc``, with the particle centres as ``particles.star`` (RELION 5 centred Å coordinates and
origins, as :mod:`cryoengine.formats.relion_export` writes them) and as copick picks (``copick.json``,
object ``blobs``, run ``TS_01``, voxel spacing 7.84, type ``wbp``). The round-trip test builds its data with
:func:`make_user_project` too.

With ``--checkpoint``, it also writes a stand-in model: a seeded, UNTRAINED ``aptvit_nano_p8`` encoder
(32³ boxes at 10 Å) in the checkpoint format of ``python -m aptvit.fit``, so ``python -m aptvit.predict``
runs offline; use a pre-trained checkpoint for real work.

Usage::

    python examples/make_user_project.py DIRECTORY [--particles 5] [--checkpoint model.ckpt]
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import starfile
import torch

from aptvit.models.registry import create_encoder
from cryoengine.formats.copick_layout import write_copick_config, write_copick_picks, write_copick_tomogram
from cryoengine.formats.mrc import write_volume
from cryoengine.physics.ctf import CtfParameters
from cryoengine.physics.extraction import extract_subtomograms
from cryoengine.physics.fourier_rescale import fourier_resample_volume
from cryoengine.physics.placement import (
    Placements,
    density_to_support_mask,
    place_particles,
    render_sample,
)
from cryoengine.physics.projector import project_volume_to_tilts
from cryoengine.physics.reconstruction import reconstruct_tilts_to_volume
from cryoengine.physics.rotation import rotation_to_relion_euler_deg
from cryoengine.physics.tilt import TiltScheme, apply_ctf_and_exposure_to_tilts

VOXEL_A, USER_VOXEL_A, BOX = 10.0, 7.84, 32
SHAPE_ZYX = (98, 98, 98)  # × 125 / 98 = 125 voxels of exactly 7.84 Å
USER_SHAPE_ZYX = (125, 125, 125)


@dataclass(frozen=True)
class UserProject:
    """The files written and the ground truth behind them.

    Attributes
    ----------
    reference
        `(24, 24, 24)` the particle's density at 10 Å.
    placements
        The particles' centres (10 Å voxels) and rotations.
    tomogram
        `(98, 98, 98)` the generator's 10 Å tomogram.
    specimen
        `(98, 98, 98)` the rendered potential it was imaged from.
    mrc_path, star_path, copick_config
        ``TS_01.mrc`` (7.84 Å), ``particles.star``, ``copick.json``.
    """

    reference: np.ndarray
    placements: Placements
    tomogram: np.ndarray
    specimen: np.ndarray
    mrc_path: Path
    star_path: Path
    copick_config: Path


def reference_particle() -> np.ndarray:
    """Return an asymmetric 24³ particle: four Gaussian blobs of different sizes (band-limited at 10 Å)."""
    grid = np.indices((24, 24, 24)).astype(np.float64) - 12
    density = np.zeros((24, 24, 24))
    for centre, sigma, weight in (
        ((0, 0, 0), 2.5, 1.0),
        ((5, 0, 0), 1.8, 0.7),
        ((0, 6, 1), 1.5, 0.6),
        ((-2, -3, 5), 1.6, 0.8),
    ):
        density += weight * np.exp(-((grid - np.reshape(centre, (3, 1, 1, 1))) ** 2).sum(0) / (2 * sigma**2))
    return density


def make_user_project(directory: str | Path, *, particles: int = 5, seed: int = 11) -> UserProject:
    """Simulate one tomogram and write it as a user would have it (module docstring).

    Parameters
    ----------
    directory
        Where the files go (created).
    particles
        Particles placed in the tomogram.
    seed
        Seed of the placements.

    Returns
    -------
    UserProject
        The paths and the ground truth.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    reference = reference_particle()
    mask = density_to_support_mask(reference, 0.05, 1)
    placements = place_particles(SHAPE_ZYX, [mask], particles, 0, 0.0, rng, target_box=BOX)
    specimen = render_sample(SHAPE_ZYX, [reference], placements)
    scheme = TiltScheme(-60.0, 60.0, 3.0)
    geometry = scheme.geometry(SHAPE_ZYX)
    tilts = apply_ctf_and_exposure_to_tilts(
        project_volume_to_tilts(specimen, geometry, backend="cpu"),
        scheme,
        CtfParameters(defocus_um=3.0),
        VOXEL_A,
    )
    tomogram = reconstruct_tilts_to_volume(tilts, geometry, "wbp", backend="cpu")
    _, shifts = extract_subtomograms(tomogram, placements.centre_zyx_vox, BOX)

    user_tomogram = fourier_resample_volume(tomogram, USER_SHAPE_ZYX, fixed="origin")
    mrc_path = write_volume(directory / "TS_01.mrc", user_tomogram, USER_VOXEL_A)
    # RELION 5 STAR as cryoengine.formats.relion_export writes it: box centre relative to the tomogram
    # centre, origin −shift.
    box_centre_xyz = (placements.centre_zyx_vox - shifts)[:, ::-1]
    centred_xyz_A = (box_centre_xyz - np.array(SHAPE_ZYX)[::-1] / 2) * VOXEL_A
    origin_xyz_A = -shifts[:, ::-1] * VOXEL_A
    rot, tilt, psi = rotation_to_relion_euler_deg(placements.rotation)
    table = pd.DataFrame(
        {
            "rlnTomoName": "TS_01",
            **{f"rlnCenteredCoordinate{a}Angst": centred_xyz_A[:, k] for k, a in enumerate("XYZ")},
            **{f"rlnOrigin{a}Angst": origin_xyz_A[:, k] for k, a in enumerate("XYZ")},
            "rlnAngleRot": rot,
            "rlnAngleTilt": tilt,
            "rlnAnglePsi": psi,
            "rlnOpticsGroup": 1,
        }
    )
    optics = pd.DataFrame({"rlnOpticsGroup": [1], "rlnTomoTiltSeriesPixelSize": [USER_VOXEL_A]})
    star_path = directory / "particles.star"
    starfile.write({"optics": optics, "particles": table}, star_path, overwrite=True)
    # copick project: the same tomogram as OME-Zarr, the particle centres as picks.
    root = directory / "copick"
    config = write_copick_config(directory / "copick.json", root, ["blobs"])
    write_copick_tomogram(root, "TS_01", USER_VOXEL_A, "wbp", user_tomogram, chunk=32)
    write_copick_picks(
        root, "TS_01", "blobs", placements.centre_zyx_vox * VOXEL_A, rotation=placements.rotation
    )
    return UserProject(reference, placements, tomogram, specimen, mrc_path, star_path, config)


def write_untrained_checkpoint(
    path: str | Path, *, box: int = BOX, voxel_size_A: float = VOXEL_A, seed: int = 0
) -> Path:
    """Write a seeded, untrained narrow ``aptvit_nano_p8`` as an ``aptvit.fit`` checkpoint (a stand-in).

    Parameters
    ----------
    path
        Output ``.ckpt``.
    box, voxel_size_A
        The data it claims to have been trained on (checked by ``aptvit.predict``).
    seed
        Seed of the weights.

    Returns
    -------
    Path
        ``path``.
    """
    overrides = {"embed_dim": 48, "depth": 2, "num_heads": 2}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = create_encoder("aptvit_nano_p8", **overrides)
    record = {"encoder": {"name": "aptvit_nano_p8", "overrides": overrides}, "box": box}
    state = {f"moco.encoder.{key}": value for key, value in encoder.state_dict().items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"aptvit": {**record, "voxel_size_A": voxel_size_A}, "state_dict": state}, path)
    return path


def main() -> None:
    """Command line: write the project into DIRECTORY and list the files."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("directory", type=Path)
    parser.add_argument("--particles", type=int, default=5)
    parser.add_argument("--checkpoint", type=Path, help="also write an untrained stand-in checkpoint here")
    args = parser.parse_args()
    project = make_user_project(args.directory, particles=args.particles)
    for path in (project.mrc_path, project.star_path, project.copick_config):
        print(path)
    write_volume(args.directory / "reference_10A.mrc", project.reference.astype(np.float32), VOXEL_A)
    print(args.directory / "reference_10A.mrc")
    if args.checkpoint is not None:
        print(write_untrained_checkpoint(args.checkpoint))


if __name__ == "__main__":
    main()
