"""Box cutting from lazy tomograms: reads only the region, pads and flags at the edge, never moves a box."""

import mrcfile
import numpy as np
import pytest

from cryoengine.formats.mrc import TomogramFileError, open_mrc_tomogram
from cryoengine.physics.box_cutting import ParticleOutsideTomogramError, cut_subtomograms
from cryoengine.physics.extraction import extract_subtomograms


class _CountingArray:
    """A lazy array that records the regions read from it."""

    def __init__(self, data):
        self.data, self.shape, self.reads = data, data.shape, []

    def __getitem__(self, key):
        self.reads.append(key)
        return self.data[key]


def _tomogram(shape=(40, 60, 50), seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def test_same_voxel_equals_extraction_and_reads_only_the_box():
    tomogram = _CountingArray(_tomogram())
    centres_vox = np.array([[20.3, 30.0, 25.6], [12.0, 40.4, 30.2]])
    cut = cut_subtomograms(tomogram, 5.0, centres_vox * 5.0, 16, 5.0, standardise=False)
    expected, shift = extract_subtomograms(tomogram.data, centres_vox, 16)
    np.testing.assert_allclose(cut.volumes, expected, atol=1e-5)
    np.testing.assert_allclose(cut.shift_zyx_vox, shift, atol=1e-9)
    assert all(all(s.stop - s.start == 16 for s in key) for key in tomogram.reads)
    assert not cut.padded.any()


def test_standardise_and_invert():
    tomogram = _tomogram() * 3 + 2
    centre = np.array([[100.0, 150.0, 125.0]])
    plain = cut_subtomograms(tomogram, 5.0, centre, 16, 5.0)
    assert plain.volumes.mean() == pytest.approx(0, abs=1e-5)
    assert plain.volumes.std() == pytest.approx(1, abs=1e-4)
    inverted = cut_subtomograms(tomogram, 5.0, centre, 16, 5.0, invert_contrast=True)
    np.testing.assert_allclose(inverted.volumes, -plain.volumes, atol=1e-5)


def test_edge_pad_skip_error():
    tomogram = _tomogram()
    centres_A = np.array([[3.0, 150.0, 125.0], [100.0, 150.0, 125.0]]) * 1.0 * 5.0 / 5.0
    padded = cut_subtomograms(tomogram, 5.0, centres_A, 16, 5.0, standardise=False)
    assert padded.padded.tolist() == [True, False]
    np.testing.assert_allclose(padded.box_centre_zyx_A[0], [5.0, 150.0, 125.0])  # not moved inwards
    inside = tomogram[0:9, 22:38, 17:33]
    np.testing.assert_allclose(padded.volumes[0, 7:], inside, atol=1e-5)
    np.testing.assert_allclose(padded.volumes[0, :7], inside.mean(), atol=1e-5)
    skipped = cut_subtomograms(tomogram, 5.0, centres_A, 16, 5.0, edge="skip")
    assert skipped.kept.tolist() == [1]
    with pytest.raises(ParticleOutsideTomogramError, match="particle 0 .* reaches beyond"):
        cut_subtomograms(tomogram, 5.0, centres_A, 16, 5.0, edge="error")
    with pytest.raises(ParticleOutsideTomogramError, match=r"particle 1 .* lies outside the tomogram"):
        cut_subtomograms(tomogram, 5.0, np.array([[10.0, 10.0, 10.0], [10.0, 10.0, 400.0]]), 16, 5.0)


def test_mrc_tomogram_is_memory_mapped_and_non_volumes_fail(tmp_path):
    path = tmp_path / "tomo.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(_tomogram())
        mrc.voxel_size = 7.84
    with open_mrc_tomogram(path) as (data, geometry):
        assert isinstance(data, np.memmap)
        assert geometry.shape_zyx == (40, 60, 50)
        assert geometry.voxel_size_A == pytest.approx(7.84)
    image = tmp_path / "image.mrc"
    with mrcfile.new(image) as mrc:
        mrc.set_data(np.zeros((30, 30), dtype=np.float32))
    with pytest.raises(TomogramFileError, match="image.mrc is not a 3D volume"):
        with open_mrc_tomogram(image):
            pass
    stack = tmp_path / "stack.mrcs"
    with mrcfile.new(stack) as mrc:
        mrc.set_data(np.zeros((5, 30, 30), dtype=np.float32))
        mrc.set_image_stack()
    with pytest.raises(TomogramFileError, match="stack.mrcs is not a 3D volume"):
        with open_mrc_tomogram(stack):
            pass
    with pytest.raises(TomogramFileError, match="missing.mrc does not exist"):
        with open_mrc_tomogram(tmp_path / "missing.mrc"):
            pass
