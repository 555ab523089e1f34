"""Pre-training objectives: InfoNCE, MoCo-v3 branches and schedule, NRCL, phase consistency, pose loss."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from aptvit.models import create_encoder
from aptvit.models.heads import MLPHead, PoseHead, PosePrediction
from aptvit.models.phase_sampler import PhaseSelection
from aptvit.objectives import (
    MoCo,
    cosine_momentum,
    info_nce,
    nrcl_loss,
    phase_agreement,
    phase_consistency_loss,
    pose_loss,
    snr_weight,
    symmetric_info_nce,
)
from aptvit.rotation import geodesic_angle_rad, point_group_rotations, random_rotations, rotate_volumes

# ---------------------------------------------------------------------------------------------------------
# InfoNCE


def _hand_info_nce(query: list[float], keys: list[list[float]], positive: int, temperature: float) -> float:
    """−log softmax(q̂·k̂ / τ)[positive], written out with math."""
    unit = [value / math.hypot(*query) for value in query]
    logits = [
        sum(u * k / math.hypot(*key) for u, k in zip(unit, key, strict=True)) / temperature for key in keys
    ]
    return -logits[positive] + math.log(sum(math.exp(logit) for logit in logits))


QUERIES = [[2.0, 0.0], [0.0, -3.0]]
KEYS = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]


@pytest.mark.parametrize("temperature", [0.2, 0.5, 1.0])
def test_info_nce_matches_hand_computed_value(temperature: float) -> None:
    positive = torch.tensor([0, 1])
    loss = info_nce(torch.tensor(QUERIES), torch.tensor(KEYS), positive, temperature)
    per_sample = [_hand_info_nce(q, KEYS, p, temperature) for q, p in zip(QUERIES, [0, 1], strict=True)]
    assert loss.item() == pytest.approx(2 * temperature * sum(per_sample) / 2, rel=1e-6)
    # Query 0 has its positive as nearest key: a lower temperature sharpens it and lowers its loss.
    assert per_sample[0] < _hand_info_nce(QUERIES[0], KEYS, 0, 2 * temperature)


def test_info_nce_weights_average_the_samples() -> None:
    positive = torch.tensor([0, 1])
    weights = torch.tensor([1.0, 3.0])
    loss = info_nce(torch.tensor(QUERIES), torch.tensor(KEYS), positive, 0.5, weights)
    first, second = (_hand_info_nce(q, KEYS, p, 0.5) for q, p in zip(QUERIES, [0, 1], strict=True))
    assert loss.item() == pytest.approx(2 * 0.5 * (first + 3 * second) / 2, rel=1e-6)


def test_info_nce_falls_as_queries_move_towards_their_keys() -> None:
    generator = torch.Generator().manual_seed(0)
    keys = torch.randn(12, 8, generator=generator)
    positive = torch.arange(4) * 3
    queries = torch.randn(4, 8, generator=generator)
    losses = [
        info_nce((1 - t) * queries + t * keys[positive], keys, positive, 0.2).item()
        for t in (0.0, 0.25, 0.5, 0.75, 1.0)
    ]
    assert all(later < earlier for earlier, later in zip(losses, losses[1:], strict=False)), losses
    # Its gradient moves them there too: one step of gradient descent lowers it.
    queries.requires_grad_()
    loss = info_nce(queries, keys, positive, 0.2)
    loss.backward()
    assert info_nce(queries.detach() - 0.5 * queries.grad, keys, positive, 0.2) < loss


def test_symmetric_info_nce_is_the_sum_of_both_directions_and_symmetric() -> None:
    generator = torch.Generator().manual_seed(1)
    q1, q2, k1, k2 = (torch.randn(3, 5, generator=generator) for _ in range(4))
    positive = torch.tensor([0, 1, 2])
    loss = symmetric_info_nce(q1, q2, k1, k2, positive, 0.2)
    expected = info_nce(q1, k2, positive, 0.2) + info_nce(q2, k1, positive, 0.2)
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(symmetric_info_nce(q2, q1, k2, k1, positive, 0.2), loss)


def test_info_nce_rejects_bad_input() -> None:
    queries, keys = torch.randn(2, 4), torch.randn(3, 4)
    with pytest.raises(ValueError, match="temperature"):
        info_nce(queries, keys, torch.tensor([0, 1]), 0.0)
    with pytest.raises(ValueError, match="positive_index"):
        info_nce(queries, keys, torch.tensor([0.0, 1.0]), 0.2)
    with pytest.raises(ValueError, match="keys"):
        info_nce(queries, torch.randn(3, 5), torch.tensor([0, 1]), 0.2)


# ---------------------------------------------------------------------------------------------------------
# Momentum schedule and MoCo branches


def test_cosine_momentum_end_points_and_shape() -> None:
    assert cosine_momentum(0, 100, 0.99) == pytest.approx(0.99, abs=1e-15)
    assert cosine_momentum(100, 100, 0.99) == 1.0
    assert cosine_momentum(50, 100, 0.99) == pytest.approx(0.995, abs=1e-12)
    values = [cosine_momentum(step, 100, 0.9) for step in range(101)]
    assert all(later >= earlier for earlier, later in zip(values, values[1:], strict=False))
    with pytest.raises(ValueError, match="step"):
        cosine_momentum(101, 100, 0.99)
    with pytest.raises(ValueError, match="base_momentum"):
        cosine_momentum(0, 100, 1.5)


class _PatchEncoder(nn.Module):
    """Stand-in with the encoder API: 2³ patches → linear tokens, no phase selection."""

    def __init__(self, embed_dim: int = 6) -> None:
        super().__init__()
        self.embed = nn.Linear(8, embed_dim)
        self.phase_modes: list[str] = []

    def forward_features(
        self, volume: torch.Tensor, phase_mode: str = "argmax", return_selection: bool = False
    ) -> tuple[torch.Tensor, PhaseSelection]:
        self.phase_modes.append(phase_mode)
        batch = volume.shape[0]
        patches = volume.reshape(batch, 2, 2, 2, 2, 2, 2).permute(0, 1, 3, 5, 2, 4, 6).reshape(batch, 8, 8)
        return self.embed(patches), PhaseSelection(volume, torch.zeros(batch, 3, dtype=torch.long), None)

    def forward_head(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens.mean(dim=1)


def _stub_moco() -> MoCo:
    torch.manual_seed(0)
    return MoCo(_PatchEncoder(), MLPHead(3, 6, 10, 4), MLPHead(2, 4, 10, 4))


def _tiny_encoder(phase_selector: str) -> nn.Module:
    return create_encoder("aptvit_tiny_p8", embed_dim=32, depth=1, num_heads=2, phase_selector=phase_selector)


def _real_moco(phase_selector: str) -> MoCo:
    torch.manual_seed(0)
    return MoCo(_tiny_encoder(phase_selector), MLPHead(3, 32, 16, 8), MLPHead(2, 8, 16, 8))


MOCO_BUILDERS = {
    "stub": (_stub_moco, (4, 1, 4, 4, 4)),
    "norm": (lambda: _real_moco("norm"), (4, 1, 16, 16, 16)),
    "fixed": (lambda: _real_moco("fixed"), (4, 1, 16, 16, 16)),
    "steerable": (lambda: _real_moco("steerable"), (4, 1, 16, 16, 16)),
}


@pytest.fixture(params=list(MOCO_BUILDERS))
def moco_and_shape(request: pytest.FixtureRequest) -> tuple[MoCo, tuple[int, ...]]:
    build, shape = MOCO_BUILDERS[request.param]
    return build(), shape


def test_momentum_branch_starts_equal_and_frozen(moco_and_shape: tuple[MoCo, tuple[int, ...]]) -> None:
    moco, _ = moco_and_shape
    for key, query in zip(moco.momentum_parameters(), moco.query_parameters(), strict=True):
        assert not key.requires_grad and query.requires_grad
        assert torch.equal(key, query) and key.data_ptr() != query.data_ptr()
    assert not any(parameter.requires_grad for parameter in moco.momentum_encoder.parameters())


def test_momentum_encoder_receives_no_gradient(moco_and_shape: tuple[MoCo, tuple[int, ...]]) -> None:
    moco, shape = moco_and_shape
    volume = torch.randn(shape, generator=torch.Generator().manual_seed(2))
    query = moco.embed_query(volume)
    key = moco.embed_key(volume + 0.1)
    assert not key.vector.requires_grad and not key.tokens.requires_grad
    assert query.vector.shape == key.vector.shape == (shape[0], moco.predictor[-1].num_features)
    info_nce(query.vector, key.vector, torch.arange(shape[0]), 0.2).backward()
    assert all(parameter.grad is None for parameter in moco.momentum_parameters())
    assert all(parameter.grad is not None for parameter in moco.predictor.parameters())
    assert any(
        parameter.grad.abs().sum() > 0
        for parameter in moco.encoder.parameters()
        if parameter.grad is not None
    )


def test_update_momentum_is_the_exact_convex_combination() -> None:
    moco = _stub_moco()
    with torch.no_grad():
        for parameter in moco.query_parameters():
            parameter.add_(torch.randn_like(parameter))
    before = [key.clone() for key in moco.momentum_parameters()]
    moco.update_momentum(0.9)
    for key, old, query in zip(moco.momentum_parameters(), before, moco.query_parameters(), strict=True):
        assert torch.equal(key, old * 0.9 + (1 - 0.9) * query)
    before = [key.clone() for key in moco.momentum_parameters()]
    moco.update_momentum(1.0)
    assert all(torch.equal(key, old) for key, old in zip(moco.momentum_parameters(), before, strict=True))
    moco.update_momentum(0.0)
    assert all(
        torch.equal(k, q) for k, q in zip(moco.momentum_parameters(), moco.query_parameters(), strict=True)
    )
    with pytest.raises(ValueError, match="momentum"):
        moco.update_momentum(1.1)


def test_branches_pass_their_phase_mode_to_the_encoder() -> None:
    moco = _stub_moco()
    volume = torch.randn(4, 1, 4, 4, 4)
    moco.embed_query(volume)
    moco.embed_key(volume)
    moco.embed_key(volume, phase_mode="gumbel")
    assert moco.encoder.phase_modes == ["gumbel"]
    assert moco.momentum_encoder.phase_modes == ["argmax", "gumbel"]


def test_real_encoder_selection_is_returned() -> None:
    moco = _real_moco("norm")
    volume = torch.randn(3, 1, 16, 16, 16, generator=torch.Generator().manual_seed(3))
    key = moco.embed_key(volume)
    assert key.tokens.shape == (3, 8, 32) and key.selection.scores.shape == (3, 8**3)
    assert _real_moco("fixed").embed_key(volume).selection.scores is None


# ---------------------------------------------------------------------------------------------------------
# NRCL and phase consistency


def test_snr_weight_values() -> None:
    weights = snr_weight(torch.tensor([0.01, 0.03, 0.1]), snr_half=0.03)
    torch.testing.assert_close(weights, torch.tensor([0.25, 0.5, 0.1 / 0.13]))
    # A noisy key adds its noise: two views at 0.06 are a pair at 0.03; a clean (infinite) key adds none.
    paired = snr_weight(torch.tensor([0.06, 0.03]), torch.tensor([0.06, math.inf]), snr_half=0.03)
    torch.testing.assert_close(paired, torch.tensor([0.5, 0.5]))
    with pytest.raises(ValueError, match="snr_half"):
        snr_weight(torch.tensor([0.1]), snr_half=0.0)


def test_nrcl_matches_hand_computed_value() -> None:
    positive = torch.tensor([0, 1])
    snr = torch.tensor([0.03, 0.01])  # weights 0.5 and 0.25
    loss = nrcl_loss(torch.tensor(QUERIES), torch.tensor(KEYS), positive, 0.2, snr, snr_half=0.03)
    first, second = (_hand_info_nce(q, KEYS, p, 0.2) for q, p in zip(QUERIES, [0, 1], strict=True))
    assert loss.item() == pytest.approx(2 * 0.2 * (0.5 * first + 0.25 * second) / 2, rel=1e-6)
    unweighted = nrcl_loss(torch.tensor(QUERIES), torch.tensor(KEYS), positive, 0.2, snr_half=None)
    assert unweighted.item() == pytest.approx(2 * 0.2 * (first + second) / 2, rel=1e-6)
    with pytest.raises(ValueError, match="snr_query"):
        nrcl_loss(torch.tensor(QUERIES), torch.tensor(KEYS), positive, 0.2)


def test_nrcl_gradient_reaches_queries_only_scaled_by_the_snr_weight() -> None:
    generator = torch.Generator().manual_seed(4)
    queries = torch.randn(3, 6, generator=generator, requires_grad=True)
    keys = torch.randn(5, 6, generator=generator, requires_grad=True)
    positive = torch.tensor([4, 0, 2])
    snr = torch.tensor([0.01, 0.1, 0.03])
    nrcl_loss(queries, keys, positive, 0.2, snr).backward()
    assert keys.grad is None  # the clean key is a target only: NRCL is not symmetrised
    weighted_grad = queries.grad.clone()
    queries.grad = None
    nrcl_loss(queries, keys, positive, 0.2, snr_half=None).backward()
    torch.testing.assert_close(weighted_grad, snr_weight(snr)[:, None] * queries.grad)


def test_nrcl_of_a_global_batch_is_the_mean_over_ranks_with_gathered_keys() -> None:
    # What the LightningModule does in DDP: each rank scores its queries against all gathered keys.
    generator = torch.Generator().manual_seed(18)
    queries, keys = torch.randn(8, 6, generator=generator), torch.randn(8, 6, generator=generator)
    snr = torch.tensor([0.01, 0.02, 0.05, 0.1, 0.1, 0.01, 0.03, 0.03])
    single = nrcl_loss(queries, keys, torch.arange(8), 0.2, snr)
    per_rank = [
        nrcl_loss(queries[rows], keys, rows, 0.2, snr[rows])
        for rows in (torch.arange(0, 4), torch.arange(4, 8))
    ]
    torch.testing.assert_close(single, torch.stack(per_rank).mean())


def test_nrcl_falls_as_noisy_queries_move_towards_clean_keys() -> None:
    generator = torch.Generator().manual_seed(5)
    keys = torch.randn(8, 16, generator=generator)
    positive = torch.tensor([1, 3, 5, 7])
    noisy = keys[positive] + 3 * torch.randn(4, 16, generator=generator)
    snr = torch.tensor([0.01, 0.02, 0.05, 0.1])
    losses = [
        nrcl_loss((1 - t) * noisy + t * keys[positive], keys, positive, 0.2, snr).item()
        for t in (0, 0.3, 0.6, 1)
    ]
    assert all(later < earlier for earlier, later in zip(losses, losses[1:], strict=False)), losses


def test_phase_consistency_matches_hand_computed_value() -> None:
    noisy = torch.tensor([[0.0, math.log(3), 0.0], [math.log(2), 0.0, 0.0]])
    clean = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 5.0]])  # target picks 1 and 2
    expected = (-math.log(3 / 5) + math.log(4)) / 2
    assert phase_consistency_loss(noisy, clean).item() == pytest.approx(expected, rel=1e-6)
    # τ_g = 1/2 squares the odds: softmax gives [1, 9, 1]/11 for row 0 and [4, 1, 1]/6 for row 1.
    expected_sharp = (-math.log(9 / 11) + math.log(6)) / 2
    assert phase_consistency_loss(noisy, clean, temperature=0.5).item() == pytest.approx(
        expected_sharp, rel=1e-6
    )
    assert phase_consistency_loss(torch.zeros(4, 64), torch.randn(4, 64)).item() == pytest.approx(
        math.log(64)
    )


def test_phase_agreement_and_its_training_signal() -> None:
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0]])
    b = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, -1.0]])
    assert phase_agreement(a, b).item() == pytest.approx(2 / 3)
    generator = torch.Generator().manual_seed(6)
    clean = torch.randn(32, 64, generator=generator)
    noisy = (clean + 3 * torch.randn(32, 64, generator=generator)).requires_grad_()
    before = phase_agreement(noisy, clean).item()
    optimiser = torch.optim.SGD([noisy], lr=20.0)
    for _ in range(20):
        optimiser.zero_grad()
        phase_consistency_loss(noisy, clean).backward()
        optimiser.step()
    assert before < 0.5 and phase_agreement(noisy, clean).item() == 1.0


def test_phase_terms_reject_missing_or_mismatched_scores() -> None:
    with pytest.raises(ValueError, match="fixed-grid"):
        phase_agreement(None, torch.zeros(2, 8))
    with pytest.raises(ValueError, match="one shape"):
        phase_consistency_loss(torch.zeros(2, 8), torch.zeros(2, 27))


# ---------------------------------------------------------------------------------------------------------
# Pose loss


def _z_rotation(angle_rad: float) -> torch.Tensor:
    """Rotation by ``angle_rad`` about z, on (z, y, x) coordinates."""
    c, s = math.cos(angle_rad), math.sin(angle_rad)
    return torch.tensor([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]], dtype=torch.float64)


def test_pose_loss_matches_hand_computed_value() -> None:
    rotation_true = random_rotations(2, torch.Generator().manual_seed(7), dtype=torch.float64)
    rotation_pred = rotation_true @ torch.stack([_z_rotation(0.3), _z_rotation(-1.2)])
    translation_true = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    translation_pred = translation_true + torch.tensor(
        [[3.0, 4.0, 0.0], [0.0, 0.0, 2.0]], dtype=torch.float64
    )
    loss = pose_loss(PosePrediction(rotation_pred, translation_pred), rotation_true, translation_true)
    assert loss.rotation_rad.item() == pytest.approx((0.3 + 1.2) / 2, abs=1e-6)
    assert loss.translation_vox.item() == pytest.approx((5 + 2) / 2)
    assert loss.total.item() == pytest.approx(0.75 + 0.1 * 3.5, abs=1e-6)
    weighted = pose_loss(
        PosePrediction(rotation_pred, translation_pred), rotation_true, translation_true, None, None, 2.0
    )
    assert weighted.total.item() == pytest.approx(0.75 + 2.0 * 3.5, abs=1e-6)


@pytest.mark.parametrize("symbol", ["C4", "D3", "O"])
def test_symmetric_pose_loss_is_zero_for_every_equivalent_prediction(symbol: str) -> None:
    group = point_group_rotations(symbol)
    generator = torch.Generator().manual_seed(8)
    rotation_true = random_rotations(len(group), generator, dtype=torch.float64)
    translation = torch.randn(len(group), 3, generator=generator, dtype=torch.float64)
    equivalent = PosePrediction(rotation_true @ group, translation)  # sample i predicts R_true · g_i
    loss = pose_loss(equivalent, rotation_true, translation, group)
    assert loss.total.item() < 1e-5
    # Without the group (C1) the same predictions cost the angles of the group elements.
    c1 = pose_loss(equivalent, rotation_true, translation)
    angles = geodesic_angle_rad(group, torch.eye(3, dtype=torch.float64))
    assert c1.rotation_rad.item() == pytest.approx(angles.mean().item(), abs=1e-5)
    # Relative poses: the group acts in the frame of the first particle.
    frame = random_rotations(len(group), generator, dtype=torch.float64)
    in_frame = rotation_true @ frame @ group @ frame.transpose(-1, -2)
    relative = pose_loss(PosePrediction(in_frame, translation), rotation_true, translation, group, frame)
    assert relative.total.item() < 1e-5


def test_pose_loss_with_one_group_per_sample() -> None:
    c4, c1 = point_group_rotations("C4"), point_group_rotations("C1")
    rotation_true = random_rotations(3, torch.Generator().manual_seed(9), dtype=torch.float64)
    quarter_turn = _z_rotation(math.pi / 2)
    prediction = PosePrediction(rotation_true @ quarter_turn, torch.zeros(3, 3, dtype=torch.float64))
    loss = pose_loss(prediction, rotation_true, torch.zeros(3, 3, dtype=torch.float64), [c4, c1, c4])
    assert loss.rotation_rad.item() == pytest.approx((0 + math.pi / 2 + 0) / 3, abs=1e-5)
    with pytest.raises(ValueError, match="one group per sample"):
        pose_loss(prediction, rotation_true, torch.zeros(3, 3, dtype=torch.float64), [c4, c1])


def test_pose_loss_trains_the_pose_head() -> None:
    torch.manual_seed(0)
    head = PoseHead(8, hidden_dim=16, num_heads=2, depth=1)
    tokens_a, tokens_b = torch.randn(4, 8, 8), torch.randn(4, 8, 8)
    rotation_true = random_rotations(4, torch.Generator().manual_seed(10))
    translation_true = torch.randn(4, 3)
    optimiser = torch.optim.Adam(head.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        optimiser.zero_grad()
        loss = pose_loss(
            head(tokens_a, tokens_b), rotation_true, translation_true, point_group_rotations("C2")
        )
        loss.total.backward()
        assert all(torch.isfinite(p.grad).all() for p in head.parameters() if p.grad is not None)
        optimiser.step()
        losses.append(loss.total.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_pose_loss_rejects_bad_input() -> None:
    prediction = PosePrediction(torch.eye(3).expand(2, 3, 3), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="rotations"):
        pose_loss(prediction, torch.eye(3).expand(3, 3, 3), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="translations"):
        pose_loss(prediction, torch.eye(3).expand(2, 3, 3), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="groups"):
        pose_loss(prediction, torch.eye(3).expand(2, 3, 3), torch.zeros(2, 3), torch.eye(3))


# ---------------------------------------------------------------------------------------------------------
# The pieces together, on the steerable encoder


def _smooth_volumes(batch: int, seed: int) -> torch.Tensor:
    """Random volumes smoothed by a circular 3³ box filter (structure at a few voxels, like particles)."""
    noise = torch.randn(batch, 1, 16, 16, 16, generator=torch.Generator().manual_seed(seed))
    return torch.nn.functional.avg_pool3d(torch.nn.functional.pad(noise, (1,) * 6, mode="circular"), 3, 1)


def _steerable_p4_moco() -> MoCo:
    torch.manual_seed(0)
    encoder = create_encoder("aptvit_tiny", embed_dim=32, depth=1, num_heads=2, phase_selector="steerable")
    return MoCo(encoder, MLPHead(3, 32, 16, 8), MLPHead(2, 8, 16, 8))


def test_key_branch_is_deterministic_in_train_mode() -> None:
    moco = _steerable_p4_moco().train()
    volume = _smooth_volumes(4, seed=11)
    first, second = moco.embed_key(volume), moco.embed_key(volume)
    assert torch.equal(first.selection.offsets_zyx, second.selection.offsets_zyx)
    torch.testing.assert_close(first.vector, second.vector, rtol=0, atol=0)


def test_phase_consistency_trains_the_query_scorer() -> None:
    moco = _steerable_p4_moco()
    clean = _smooth_volumes(8, seed=12)
    noisy = clean + 0.5 * clean.std() * torch.randn(clean.shape, generator=torch.Generator().manual_seed(13))
    sampler = moco.encoder.phase_sampler
    target = moco.embed_key(clean).selection.scores
    optimiser = torch.optim.Adam(sampler.parameters(), lr=3e-2)
    losses = []
    for _ in range(20):
        optimiser.zero_grad()
        loss = phase_consistency_loss(sampler.score_phases(noisy), target, sampler.temperature)
        loss.backward()
        assert all(parameter.grad.abs().sum() > 0 for parameter in sampler.scorer.parameters())
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.85 * losses[0], losses


def test_one_training_step_of_nrcl_pose_and_phase_terms() -> None:
    moco = _steerable_p4_moco().train()
    pose_head = PoseHead(32, hidden_dim=16, num_heads=2, depth=1)
    clean = _smooth_volumes(4, seed=14)
    noisy = clean + clean.std() * torch.randn(clean.shape, generator=torch.Generator().manual_seed(15))
    rotation = random_rotations(4, torch.Generator().manual_seed(16))
    shift = torch.tensor([[1.0, -2.0, 0.0], [0.0, 1.0, 1.0], [-1.0, 0.0, 2.0], [0.0, 0.0, 0.0]])
    moved = rotate_volumes(noisy, rotation, shift)
    query, query_moved, key = moco.embed_query(noisy), moco.embed_query(moved), moco.embed_key(clean)
    contrastive = nrcl_loss(query.vector, key.vector, torch.arange(4), 0.2, torch.full((4,), 0.05))
    pose = pose_loss(pose_head(query.tokens, query_moved.tokens), rotation, shift)
    phase = phase_consistency_loss(query.selection.scores, key.selection.scores, 1.0)
    total = contrastive + 0.5 * pose.total + 0.1 * phase
    total.backward()
    assert torch.isfinite(total)
    trained = [*moco.encoder.parameters(), *moco.projector.parameters(), *moco.predictor.parameters()]
    assert all(parameter.grad is not None for parameter in [*trained, *pose_head.parameters()])
    assert all(parameter.grad is None for parameter in moco.momentum_parameters())
    assert 0 <= phase_agreement(query.selection.scores, key.selection.scores).item() <= 1


def test_losses_keep_float32_under_bf16_autocast() -> None:
    generator = torch.Generator().manual_seed(17)
    queries, keys = torch.randn(6, 16, generator=generator), torch.randn(9, 16, generator=generator)
    positive = torch.tensor([0, 2, 4, 6, 8, 1])
    group = point_group_rotations("D2", dtype=torch.float32)
    rotation_true = random_rotations(4, generator)
    prediction = PosePrediction(rotation_true @ group, torch.zeros(4, 3))
    reference = info_nce(queries, keys, positive, 0.2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = info_nce(queries, keys, positive, 0.2)
        pose = pose_loss(prediction, rotation_true, torch.zeros(4, 3), group)
    assert under_autocast.dtype == torch.float32 and pose.total.dtype == torch.float32
    torch.testing.assert_close(under_autocast, reference)
    assert pose.rotation_rad.item() < 1e-3  # bf16 products would leave ~0.1 rad
