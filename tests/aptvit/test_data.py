"""Pre-training loader: shard streaming over ranks × workers, split by tomogram, views, bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch import LightningModule, Trainer

from aptvit.data import SubtomogramDataModule, mix_noise_at_snr, standardise_volumes
from aptvit.rotation import random_rotations, relative_pose, rotate_volumes
from cryoengine.physics.noise import mix_noise_at_snr_levels
from cryoengine.store import (
    DatasetFormatError,
    DatasetNotFoundError,
    open_dataset,
    write_class_group,
    write_manifest,
)
from cryoengine.store.particle_set import ParticleSet

BOX = 16
LEVELS = [0.1, 0.05, 0.01]
SHARD = 4
REALISATIONS = 2
# class → particles per tomogram (tomograms 0, 1, 2, ...): several classes × several tomograms.
LAYOUT = {"alpha": [5, 4, 6], "beta": [3, 5, 4, 2], "gamma": [7, 6]}
DATASET_ATTRS = {
    "voxel_size_A": 10.0,
    "box": BOX,
    "snr_levels": LEVELS,
    "noise_realisations": REALISATIONS,
    # Label order = config order, not sorted; "omega" is configured but has no group (its label is kept).
    "class_labels": ["gamma", "alpha", "omega", "beta"],
    "provenance": {"seed": 0},
}
LABELS = {"gamma": 0, "alpha": 1, "beta": 3}


def _blobs(n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` smooth random blobs (clean volumes with structure, not white noise)."""
    grid = np.stack(np.meshgrid(*[np.arange(BOX)] * 3, indexing="ij"), axis=-1).astype(np.float32)
    centres = rng.uniform(5, 11, (n, 3, 3))
    volumes = np.zeros((n, BOX, BOX, BOX), np.float32)
    for k in range(3):
        distance = ((grid[None] - centres[:, k, None, None, None, :]) ** 2).sum(-1)
        volumes += np.exp(-distance / (2 * 2.0**2))
    return volumes


def _class_particles(class_id: str, per_tomogram: list[int], seed: int) -> ParticleSet:
    """Particles whose noise scale makes the nominal SNR their own measured SNR (reference = particle)."""
    rng = np.random.default_rng(seed)
    n = sum(per_tomogram)
    clean = _blobs(n, rng)
    noise = rng.standard_normal((n, REALISATIONS, BOX, BOX, BOX)).astype(np.float32)
    noise /= noise.std(axis=(2, 3, 4), keepdims=True)
    scale = clean.std(axis=(1, 2, 3))
    noisy, snr = mix_noise_at_snr_levels(
        clean, noise, scale, np.array(LEVELS), clean.var(axis=(1, 2, 3)), device="cpu"
    )
    shift = rng.uniform(-0.5, 0.5, (n, 3))
    return ParticleSet(
        clean=clean,
        noise=noise,
        noise_scale=scale,
        noisy=noisy,
        snr=snr,
        rotation=random_rotations(n, torch.Generator().manual_seed(seed), dtype=torch.float64).numpy(),
        shift=shift,
        position=rng.integers(10, 90, (n, 3)) + shift,
        tomogram=np.repeat(np.arange(len(per_tomogram)), per_tomogram),
        defocus_um=rng.uniform(2, 5, n),
        attrs={"class_id": class_id, "voxel_size_A": 10.0, "snr_levels": LEVELS},
    )


def _downgrade_to_format_1(path: Path) -> None:
    """Make a format-2 dataset what format 1 wrote: no noise arrays, no noise_realisations, version 1."""
    for meta_path in [path / "zarr.json", *(path / "classes").glob("*/zarr.json")]:
        meta = json.loads(meta_path.read_text())
        meta["attributes"]["format_version"] = 1
        meta["attributes"].pop("noise_realisations")
        meta["attributes"].pop("class_labels", None)
        for name in ("noise", "noise_scale"):
            meta["attributes"].get("checksums", {}).pop(name, None)
            shutil.rmtree(meta_path.parent / name, ignore_errors=True)
        meta_path.write_text(json.dumps(meta))


@pytest.fixture(scope="module")
def dataset_path(tmp_path_factory) -> str:
    """A format-2 dataset: three classes of 2-4 tomograms, 16³ boxes, shards of 4, K = 2."""
    path = tmp_path_factory.mktemp("pretrain") / "dataset.zarr"
    for k, (class_id, per_tomogram) in enumerate(LAYOUT.items()):
        particles = _class_particles(class_id, per_tomogram, seed=k)
        write_class_group(path, class_id, particles, {"name": class_id}, DATASET_ATTRS, SHARD)
    write_manifest(path, list(LAYOUT), DATASET_ATTRS)
    return str(path)


@pytest.fixture(scope="module")
def format_1_path(dataset_path, tmp_path_factory) -> str:
    """The same particles as format 1 wrote them (stored levels only)."""
    path = tmp_path_factory.mktemp("format1") / "dataset.zarr"
    shutil.copytree(dataset_path, path)
    _downgrade_to_format_1(path)
    assert open_dataset(path).format_version == 1
    return str(path)


def _module(path: str, **kwargs) -> SubtomogramDataModule:
    options = {"batch_size": 3, "num_workers": 0, "val_fraction": 0.3, "shuffle_buffer": 8, "seed": 5}
    module = SubtomogramDataModule([path], **{**options, **kwargs})
    module.setup("fit")
    return module


def _epoch_indices(stream, epoch: int, rank: int, world: int, worker: int, workers: int) -> list[list[int]]:
    stream.set_epoch(epoch)
    stream.rank, stream.world_size = rank, world
    return [batch["index"].tolist() for batch in stream.iter_worker(worker, workers)]


def test_every_item_of_an_epoch_is_seen_once_across_2_ranks_and_2_workers(dataset_path):
    module = _module(dataset_path)
    stream = module.train_stream
    plan = stream.plan
    per_rank, seen = [], []
    for rank in range(2):
        batches = [b for worker in range(2) for b in _epoch_indices(stream, 3, rank, 2, worker, 2)]
        assert all(len(b) == 3 for b in batches)
        per_rank.append(len(batches))
        seen += [i for b in batches for i in b]
    assert per_rank[0] == per_rank[1] == plan.batches_per_rank(2) == plan.num_items // 6
    assert len(seen) == len(set(seen)) == per_rank[0] * 2 * 3
    train_items = {int(i) for piece in plan.pieces for i in _global(dataset_path, piece)}
    assert set(seen) <= train_items and len(train_items - set(seen)) < 2 * 3
    # Validation: the same number of batches on both ranks too (the last one partial), < 2 items left out.
    val = module.val_stream
    val_batches = [[b for w in range(2) for b in _epoch_indices(val, 0, r, 2, w, 2)] for r in range(2)]
    assert len(val_batches[0]) == len(val_batches[1]) == val.plan.batches_per_rank(2) > 0
    val_seen = [i for rank in val_batches for b in rank for i in b]
    assert len(val_seen) == len(set(val_seen)) > val.plan.num_items - 2
    # Another epoch leaves out other items, and batch size 1 on one rank sees the whole split.
    assert set(_flat(stream, 4, 2)) != set(seen)
    assert sorted(_flat(_module(dataset_path, batch_size=1).train_stream, 0, 1)) == sorted(train_items)


def _flat(stream, epoch: int, world: int) -> list[int]:
    return [
        i
        for r in range(world)
        for w in range(2)
        for b in _epoch_indices(stream, epoch, r, world, w, 2)
        for i in b
    ]


def _global(path: str, piece) -> np.ndarray:
    dataset = open_dataset(path)
    offset = sum(dataset.counts[c] for c in dataset.classes[: dataset.classes.index(piece.class_id)])
    return offset + piece.rows


def test_a_loader_with_2_worker_processes_yields_the_planned_batches(dataset_path):
    module = _module(dataset_path, num_workers=2)
    loader = module.train_dataloader()
    module.set_epoch(2)
    batches = [batch["index"].tolist() for batch in loader]
    assert len(batches) == len(loader) == module.train_stream.plan.batches_per_rank(1)
    expected = [_epoch_indices(module.train_stream, 2, 0, 1, w, 2) for w in range(2)]
    assert sorted(map(tuple, batches)) == sorted(tuple(b) for worker in expected for b in worker)


def test_no_tomogram_is_in_both_splits_and_each_class_has_both_sides(dataset_path):
    module = _module(dataset_path)
    for class_id in LAYOUT:
        sides = [side for (_, c, _), side in module.split.items() if c == class_id]
        assert sides.count("train") >= 1 and sides.count("val") >= 1
    dataset = open_dataset(dataset_path)
    seen = {"train": set(), "val": set()}
    for name, stream in (("train", module.train_stream), ("val", module.val_stream)):
        stream.rank, stream.world_size = 0, 1
        for batch in stream.iter_worker(0, 1):
            for label, tomogram, index in zip(batch["label"], batch["tomogram"], batch["index"], strict=True):
                class_id = module.classes[int(label)]
                assert dataset[int(index)].tomogram == int(tomogram)
                seen[name].add((class_id, int(tomogram)))
    assert seen["train"] and seen["val"] and not seen["train"] & seen["val"]


def test_an_excluded_class_never_appears_and_labels_stay_stable(dataset_path, format_1_path):
    module = _module(dataset_path, exclude_classes=["beta"], val_fraction=0.0, batch_size=1)
    assert module.classes == ("gamma", "alpha", "omega", "beta")
    labels = {int(label) for batch in module.train_stream.iter_worker(0, 1) for label in batch["label"]}
    assert labels == {LABELS["alpha"], LABELS["gamma"]}
    only = _module(dataset_path, include_classes=["beta"], val_fraction=0.0, batch_size=1)
    assert {int(b["label"][0]) for b in only.train_stream.iter_worker(0, 1)} == {LABELS["beta"]}
    dataset = open_dataset(dataset_path)
    assert all(dataset.class_index(c) == label for c, label in LABELS.items())
    # Format 1 kept no label table: its labels are the sorted groups present.
    assert _module(format_1_path).classes == ("alpha", "beta", "gamma")


def test_order_is_fixed_by_seed_and_epoch(dataset_path):
    first, again = _module(dataset_path).train_stream, _module(dataset_path).train_stream
    assert _epoch_indices(first, 1, 0, 1, 0, 1) == _epoch_indices(again, 1, 0, 1, 0, 1)
    assert _epoch_indices(first, 1, 0, 1, 0, 1) != _epoch_indices(first, 2, 0, 1, 0, 1)
    one = next(_module(dataset_path).train_stream.iter_worker(0, 1))
    two = next(_module(dataset_path).train_stream.iter_worker(0, 1))
    for name, value in one.items():
        assert torch.equal(value, two[name]), name
    val = _module(dataset_path).val_stream
    assert _epoch_indices(val, 0, 0, 1, 0, 1) == _epoch_indices(val, 7, 0, 1, 0, 1)


def test_batch_contract_and_pose_target_is_the_transformed_source(dataset_path):
    module = _module(dataset_path, max_shift_vox=2.0)
    batch = module.on_after_batch_transfer(next(module.train_stream.iter_worker(0, 1)), 0)
    shapes = {
        "query": (3, 1, BOX, BOX, BOX),
        "key": (3, 1, BOX, BOX, BOX),
        "pose_source": (3, 1, BOX, BOX, BOX),
        "pose_target": (3, 1, BOX, BOX, BOX),
        "query_snr": (3,),
        "key_snr": (3,),
        "pose_rotation": (3, 3, 3),
        "pose_shift": (3, 3),
        "label": (3,),
        "rotation": (3, 3, 3),
        "shift": (3, 3),
        "tomogram": (3,),
        "index": (3,),
        "key_rotation": (3, 3, 3),
        "key_unrotated": (3, 1, BOX, BOX, BOX),
    }
    assert {name: tuple(value.shape) for name, value in batch.items()} == shapes
    # The key is the clean view in another, uniformly drawn orientation.
    rotated_key = standardise_volumes(rotate_volumes(batch["key_unrotated"], batch["key_rotation"]))
    assert torch.allclose(batch["key"], rotated_key, atol=1e-5)
    assert not torch.allclose(batch["key"], batch["key_unrotated"], atol=1e-2)
    for name in ("query", "key", "pose_target"):
        assert torch.allclose(batch[name].mean((2, 3, 4)), torch.zeros(3, 1), atol=1e-5)
        assert torch.allclose(batch[name].var((2, 3, 4), correction=0), torch.ones(3, 1), atol=1e-4)
    assert torch.isinf(batch["key_snr"]).all()
    expected = standardise_volumes(
        rotate_volumes(batch["pose_source"], batch["pose_rotation"], batch["pose_shift"])
    )
    assert torch.allclose(batch["pose_target"], expected, atol=1e-5)
    rotation = batch["pose_rotation"].double()
    assert torch.allclose(
        rotation @ rotation.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand(3, 3, 3), atol=1e-6
    )
    assert (batch["pose_shift"].norm(dim=1) <= 2.0 + 1e-6).all()


def test_particle_pairing_gives_the_relative_pose_of_another_particle_of_the_class(dataset_path):
    module = _module(dataset_path, pose_pairing="particle", val_fraction=0.0)
    dataset = open_dataset(dataset_path)
    items = [dataset[i] for i in range(len(dataset))]
    for raw in module.train_stream.iter_worker(0, 1):
        batch = module.on_after_batch_transfer(raw, 0)
        for b in range(len(batch["index"])):
            i = int(batch["index"][b])
            target_rotation = batch["pose_rotation"][b].double() @ torch.from_numpy(items[i].rotation)
            partners = [
                item
                for item in items
                if np.allclose(item.rotation, target_rotation.numpy(), atol=1e-5)
                and item.class_id == items[i].class_id
            ]
            assert len(partners) == 1 and partners[0].index != i
            _, shift = relative_pose(
                torch.from_numpy(items[i].rotation),
                torch.from_numpy(items[i].shift).double(),
                torch.from_numpy(partners[0].rotation),
                torch.from_numpy(partners[0].shift).double(),
            )
            assert torch.allclose(batch["pose_shift"][b].double(), shift, atol=1e-5)


def test_query_snr_is_the_stored_measured_snr_of_the_drawn_level_format_1(format_1_path):
    module = _module(format_1_path, snr_levels=[0.05], val_fraction=0.0)
    dataset = open_dataset(format_1_path)
    raw = next(module.train_stream.iter_worker(0, 1))
    for b, index in enumerate(raw["index"].tolist()):
        clean = dataset[index].clean
        measured = clean.var() / (raw["query"][b, 0].numpy() - clean).var()
        assert measured == pytest.approx(0.05, rel=1e-3)
        assert measured == pytest.approx(float(raw["query_snr"][b]), rel=1e-4)
    val = _module(format_1_path, val_snr=0.01).val_stream
    assert torch.allclose(next(val.iter_worker(0, 1))["query_snr"], torch.tensor(0.01), rtol=1e-3)
    batch = module.on_after_batch_transfer(raw, 0)
    assert torch.isinf(batch["key_snr"]).all() and batch["pose_target"].shape == (3, 1, BOX, BOX, BOX)


def test_two_noisy_views_carry_independent_noise_at_the_drawn_snr_format_2(dataset_path):
    module = _module(dataset_path, key_view="noisy", snr_range=(0.01, 0.2), val_fraction=0.0, batch_size=1)
    dataset = open_dataset(dataset_path)
    correlations, snrs = [], []
    for raw in module.train_stream.iter_worker(0, 1):
        clean = dataset[int(raw["index"][0])].clean
        noise_q, noise_k = raw["query"][0, 0].numpy() - clean, raw["key"][0, 0].numpy() - clean
        correlations.append(np.corrcoef(noise_q.ravel(), noise_k.ravel())[0, 1])
        # The fixture's noise scale makes the nominal SNR each particle's measured SNR.
        assert clean.var() / noise_q.var() == pytest.approx(float(raw["query_snr"][0]), rel=1e-3)
        assert clean.var() / noise_k.var() == pytest.approx(float(raw["key_snr"][0]), rel=1e-3)
        snrs += [float(raw["query_snr"][0]), float(raw["key_snr"][0])]
    # 4,096 voxels: the correlation of independent noise has a standard deviation of ~0.016.
    assert abs(np.mean(correlations)) < 0.01 and np.max(np.abs(correlations)) < 0.07
    assert 0.01 <= min(snrs) and max(snrs) <= 0.2
    # Log-uniform: the median of log s is the middle of the log range.
    assert np.median(np.log(snrs)) == pytest.approx(np.log(np.sqrt(0.01 * 0.2)), abs=0.5)
    # Any positive SNR is possible in format 2, and validation is at val_snr.
    assert _module(dataset_path, snr_range=(1e-4, 50.0)).train_stream.plan.num_items > 0
    val = next(_module(dataset_path, val_snr=0.02).val_stream.iter_worker(0, 1))
    assert torch.allclose(val["query_snr"], torch.tensor(0.02))


def test_mix_noise_at_snr_and_standardise_volumes(dataset_path):
    item = open_dataset(dataset_path)[3]
    volume = mix_noise_at_snr(item.clean, item.noise[1], item.noise_scale, 0.03)
    assert item.clean.var() / (volume - item.clean).var() == pytest.approx(0.03, rel=1e-4)
    with pytest.raises(ValueError, match="snr must be positive"):
        mix_noise_at_snr(item.clean, item.noise[1], 1.0, 0.0)
    volumes = torch.randn(2, 1, 5, 6, 7) * 3 + 2
    standard = standardise_volumes(volumes)
    assert torch.allclose(standard.mean((-3, -2, -1)), torch.zeros(2, 1), atol=1e-6)
    assert torch.allclose(standard.var((-3, -2, -1), correction=0), torch.ones(2, 1), atol=1e-5)
    assert torch.equal(standardise_volumes(torch.ones(4, 4, 4)), torch.zeros(4, 4, 4))


class _Recorder(LightningModule):
    """Records what the trainer hands to training_step: the batch keys and indices of each epoch."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))
        self.seen: list[tuple[int, list[int], set[str]]] = []

    def training_step(self, batch, batch_idx):
        self.seen.append((self.current_epoch, batch["index"].tolist(), set(batch)))
        return (self.weight - batch["query"].mean()) ** 2

    def validation_step(self, batch, batch_idx, dataloader_idx=0):
        self.seen.append((-1, batch["index"].tolist(), set(batch)))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.filterwarnings("ignore:.*does not have many workers")
@pytest.mark.filterwarnings("ignore:Your `IterableDataset` has `__len__` defined")  # exact here
@pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning")  # Lightning 2.6's pytree use on torch 2.13
def test_the_trainer_gets_finished_batches_and_a_new_order_each_epoch(dataset_path, tmp_path):
    module = SubtomogramDataModule(
        [dataset_path], batch_size=3, num_workers=0, val_fraction=0.3, seed=5, knn_bank_items=0
    )
    recorder = _Recorder()
    trainer = Trainer(
        max_epochs=2,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        accelerator="cpu",
    )
    trainer.fit(recorder, datamodule=module)
    epochs = {epoch: [i for e, b, _ in recorder.seen if e == epoch for i in b] for epoch in (0, 1)}
    assert all(keys >= {"pose_source", "pose_target", "query", "key"} for _, _, keys in recorder.seen)
    assert epochs[0] == _flat_one(module.train_stream, 0) and epochs[1] == _flat_one(module.train_stream, 1)
    assert epochs[0] != epochs[1]
    validation = [b for e, b, _ in recorder.seen if e == -1]
    assert validation == 2 * _epoch_indices(module.val_stream, 0, 0, 1, 0, 1)


def test_the_knn_bank_is_a_spread_of_the_training_split(dataset_path):
    module = _module(dataset_path, knn_bank_items=6)
    bank, validation = module.val_dataloader()
    bank_items = [i for batch in bank for i in batch["index"].tolist()]
    validation_items = [i for batch in validation for i in batch["index"].tolist()]
    training_items = set(_flat_one(module.train_stream, 0)) | set(_flat_one(module.train_stream, 1))
    assert 6 <= len(bank_items) < 12 and len(set(bank_items)) == len(bank_items)
    assert set(bank_items) <= training_items and not set(bank_items) & set(validation_items)
    assert module.dataset_record()["box"] == BOX


def _flat_one(stream, epoch: int) -> list[int]:
    return [i for b in _epoch_indices(stream, epoch, 0, 1, 0, 1) for i in b]


@pytest.mark.parametrize(
    ("fixture", "kwargs", "error", "match"),
    [
        (
            "dataset_path",
            {"include_classes": ["delta"]},
            ValueError,
            "include_classes names delta, which .*zarr do",
        ),
        ("dataset_path", {"exclude_classes": ["delta"]}, ValueError, "exclude_classes names delta"),
        ("dataset_path", {"include_classes": ["omega"]}, ValueError, "include_classes names omega, which"),
        (
            "dataset_path",
            {"batch_size": 100},
            ValueError,
            "batch_size 100 × 1 rank.* larger than the training split",
        ),
        (
            "format_1_path",
            {"snr_range": (0.01, 0.1)},
            ValueError,
            "snr_range .* unit noise .*zarr is format 1",
        ),
        (
            "format_1_path",
            {"snr_levels": [0.2]},
            ValueError,
            "snr_levels 0.2 is not a stored level of .*zarr",
        ),
        ("format_1_path", {"val_snr": 0.5}, ValueError, "val_snr 0.5 is not a stored level"),
        (
            "format_1_path",
            {"key_view": "noisy"},
            ValueError,
            "key_view 'noisy' needs .*the key must be the clean",
        ),
    ],
)
def test_bad_configuration_against_the_data_is_a_one_line_error(request, fixture, kwargs, error, match):
    with pytest.raises(error, match=match) as raised:
        _module(request.getfixturevalue(fixture), **kwargs)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"snr_range": (0.0, 0.1)}, "snr_range must be"),
        ({"snr_range": (0.2, 0.1)}, "snr_range must be"),
        ({"snr_levels": [-1.0]}, "snr_levels must be"),
        ({"key_view": "other"}, "key_view must be"),
        ({"pose_pairing": "other"}, "pose_pairing must be"),
        ({"batch_size": 0}, "batch_size must be"),
        ({"val_fraction": 1.0}, "val_fraction must be"),
    ],
)
def test_bad_arguments_fail_in_init_without_io(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SubtomogramDataModule(["/nonexistent/dataset.zarr"], **kwargs)


def test_a_missing_path_or_a_non_dataset_is_named(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="missing.zarr does not exist"):
        _module(str(tmp_path / "missing.zarr"))
    (tmp_path / "plain").mkdir()
    with pytest.raises(DatasetNotFoundError, match="plain is not a cryoengine dataset"):
        _module(str(tmp_path / "plain"))
    (tmp_path / "other.zarr").mkdir()
    (tmp_path / "other.zarr" / "zarr.json").write_text(
        '{"zarr_format": 3, "node_type": "group", "attributes": {}}'
    )
    with pytest.raises(DatasetFormatError, match="other.zarr has format None"):
        _module(str(tmp_path / "other.zarr"))


def test_several_datasets_are_numbered_one_after_another_with_one_label_table(dataset_path, format_1_path):
    module = SubtomogramDataModule([dataset_path, format_1_path], batch_size=4, num_workers=0, seed=1)
    module.setup("fit")
    assert module.classes == ("gamma", "alpha", "omega", "beta")
    size = len(open_dataset(dataset_path))
    stream = module.train_stream
    stream.rank, stream.world_size = 0, 1
    seen = [batch for batch in stream.iter_worker(0, 1)]
    indices = torch.cat([batch["index"] for batch in seen])
    assert len(set(indices.tolist())) == len(indices) and (indices >= size).any() and (indices < size).any()
    # A class has one label in both datasets (their numbering differs: format 1 orders classes sorted);
    # format 1 reports the stored measured SNR of the drawn level.
    first, second = open_dataset(dataset_path), open_dataset(format_1_path)
    for batch in seen:
        for label, index, snr in zip(batch["label"], batch["index"], batch["query_snr"], strict=True):
            item = first[int(index)] if index < size else second[int(index) - size]
            assert module.classes[int(label)] == item.class_id
            if index >= size:
                assert any(float(snr) == pytest.approx(float(s), rel=1e-6) for s in item.snr)
