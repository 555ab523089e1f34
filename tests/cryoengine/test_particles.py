"""ParticleSet: validation, bit-exact save/load, clear errors on bad files, concatenation."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
from particle_factory import BOX, LEVELS
from particle_factory import make_particles as make_synthetic

from cryoengine.store.particle_set import ParticleFileError, ParticleSet, concatenate


def make_particles(
    n: int = 7, seed: int = 0, with_noise: bool = True, provenance: object = None
) -> ParticleSet:
    attrs = {"voxel_size_A": 10.0, "snr_levels": LEVELS, "provenance": provenance}
    return make_synthetic(n, seed, with_noise=with_noise, attrs=attrs)


def assert_same_bytes(left: ParticleSet, right: ParticleSet) -> None:
    for name in (
        "clean",
        "noise",
        "noise_scale",
        "noisy",
        "snr",
        "rotation",
        "shift",
        "position",
        "tomogram",
        "defocus_um",
    ):
        a, b = getattr(left, name), getattr(right, name)
        if a is None or b is None:
            assert a is None and b is None, name
            continue
        assert a.dtype == b.dtype and a.shape == b.shape, name
        assert a.tobytes() == b.tobytes(), name
    assert left.attrs == right.attrs


def test_arrays_get_the_contract_dtypes():
    particles = make_particles()
    expected = {
        "clean": np.float32,
        "noise": np.float32,
        "noisy": np.float32,
        "snr": np.float32,
        "rotation": np.float64,
        "shift": np.float32,
        "position": np.float32,
        "tomogram": np.int32,
        "defocus_um": np.float32,
    }
    for name, dtype in expected.items():
        value = getattr(particles, name)
        assert value.dtype == dtype and value.flags.c_contiguous, name
    assert len(particles) == 7 and particles.box == BOX


@pytest.mark.parametrize("with_noise", [True, False])
def test_save_load_is_bit_exact(tmp_path, with_noise):
    particles = make_particles(with_noise=with_noise, provenance={"seed": 3})
    path = particles.save(tmp_path / "a.npz")
    assert_same_bytes(ParticleSet.load(path), particles)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npz"]  # no temporary left behind


def test_save_is_atomic(tmp_path, monkeypatch):
    path = make_particles(seed=1).save(tmp_path / "a.npz")
    before = path.read_bytes()

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", fail)
    with pytest.raises(OSError, match="disk full"):
        make_particles(seed=2).save(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npz"]


@pytest.mark.parametrize(
    ("field", "bad"),
    [
        ("clean", np.zeros((7, BOX, BOX, BOX + 1))),
        ("noise", np.zeros((7, 2, BOX, BOX, BOX - 1))),
        ("noise_scale", np.zeros(6)),
        ("noisy", np.zeros((7, len(LEVELS), BOX, BOX))),
        ("snr", np.zeros((7, len(LEVELS) + 1))),
        ("rotation", np.zeros((7, 3))),
        ("shift", np.zeros((6, 3))),
        ("position", np.zeros((7, 2))),
        ("tomogram", np.zeros(8, dtype=int)),
        ("defocus_um", np.zeros((7, 1))),
    ],
)
def test_wrong_shape_names_the_field(field, bad):
    particles = make_particles()
    arrays = {
        name: getattr(particles, name)
        for name in (
            "clean",
            "noise",
            "noise_scale",
            "noisy",
            "snr",
            "rotation",
            "shift",
            "position",
            "tomogram",
            "defocus_um",
        )
    }
    arrays[field] = bad
    with pytest.raises(ValueError, match=rf"ParticleSet\.{field}"):
        ParticleSet(**arrays, attrs=particles.attrs)


def test_bad_values_are_rejected():
    particles = make_particles()
    base = {
        name: getattr(particles, name)
        for name in ("clean", "rotation", "shift", "position", "tomogram", "defocus_um")
    }
    with pytest.raises(ValueError, match=r"noisy and ParticleSet\.snr"):
        ParticleSet(**base, noisy=particles.noisy)
    with pytest.raises(ValueError, match=r"ParticleSet\.tomogram must hold integers"):
        ParticleSet(**{**base, "tomogram": base["tomogram"] + 0.5})
    with pytest.raises(ValueError, match=r"ParticleSet\.defocus_um contains non-finite"):
        ParticleSet(**{**base, "defocus_um": np.full(7, np.nan)})
    with pytest.raises(ValueError, match=r"ParticleSet\.attrs is not JSON"):
        ParticleSet(**base, attrs={"when": object()})
    with pytest.raises(ValueError, match=r"snr_levels'\] has 2 levels but noisy has 3"):
        ParticleSet(**base, noisy=particles.noisy, snr=particles.snr, attrs={"snr_levels": [0.1, 0.2]})


def test_load_missing_file_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.npz does not exist"):
        ParticleSet.load(tmp_path / "nothing.npz")


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_load_damaged_file_names_it(tmp_path, damage):
    path = make_particles().save(tmp_path / "a.npz")
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    else:
        data[len(data) // 3] ^= 0xFF  # inside an uncompressed member: caught by the zip CRC
    path.write_bytes(bytes(data))
    with pytest.raises(ParticleFileError, match=r"a\.npz is not a readable particle set"):
        ParticleSet.load(path)


def test_load_file_lacking_a_field_names_it(tmp_path):
    path = tmp_path / "partial.npz"
    np.savez(path, clean=np.zeros((1, BOX, BOX, BOX), np.float32))
    with pytest.raises(ParticleFileError, match="missing field.*rotation"):
        ParticleSet.load(path)
    assert zipfile.is_zipfile(path)


def test_concatenate_keeps_order_and_every_provenance():
    parts = [make_particles(n, seed=n, provenance={"seed": n}) for n in (3, 1, 4)]
    joined = concatenate(parts)
    assert len(joined) == 8
    np.testing.assert_array_equal(joined.noisy, np.concatenate([p.noisy for p in parts]))
    np.testing.assert_array_equal(joined.tomogram, np.concatenate([p.tomogram for p in parts]))
    assert joined.attrs["provenance"] == [{"seed": 3}, {"seed": 1}, {"seed": 4}]
    assert concatenate([joined, parts[0]]).attrs["provenance"][-2:] == [{"seed": 4}, {"seed": 3}]


def test_concatenate_rejects_mismatched_parts():
    with pytest.raises(ValueError, match="at least one"):
        concatenate([])
    other = make_particles(seed=1)
    other.attrs["voxel_size_A"] = 5.0
    with pytest.raises(ValueError, match=r"sets\[1\]\.attrs differ .* voxel_size_A"):
        concatenate([make_particles(), other])
    with pytest.raises(ValueError, match=r"sets\[1\]\.noise"):
        concatenate([make_particles(), make_particles(with_noise=False)])
