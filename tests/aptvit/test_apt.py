"""Polyphase decomposition, per-sample rolls and adaptive phase selection (argmax and Gumbel paths)."""

import math

import pytest
import torch

from aptvit.models import (
    AdaptivePhaseSampler,
    NormScorer,
    patchify_volume,
    phase_offsets_zyx,
    polyphase_components,
    roll_volume_zyx,
)
from aptvit.models.phase_sampler import _StraightThroughRoll

# Non-cubic, each axis a different multiple of p, to expose axis-order bugs.
SHAPE = (2, 3, 8, 12, 16)


def test_polyphase_components_are_strided_slices_in_offset_order():
    torch.manual_seed(0)
    volume = torch.randn(SHAPE)
    components = polyphase_components(volume, 4)
    offsets = phase_offsets_zyx(4)
    assert components.shape == (2, 64, 3, 2, 3, 4)
    assert offsets.shape == (64, 3)
    for k, (kz, ky, kx) in enumerate(offsets.tolist()):
        assert k == kz * 16 + ky * 4 + kx
        assert torch.equal(components[:, k], volume[:, :, kz::4, ky::4, kx::4])


def test_polyphase_components_partition_the_voxels():
    volume = torch.arange(torch.tensor(SHAPE).prod().item(), dtype=torch.float64).reshape(SHAPE)
    components = polyphase_components(volume, 2)
    assert torch.equal(components.flatten().sort().values, volume.flatten())


@pytest.mark.parametrize("bad_shape", [(1, 1, 8, 8, 6), (1, 8, 8, 8)])
def test_polyphase_components_rejects_bad_shapes(bad_shape):
    with pytest.raises(ValueError):
        polyphase_components(torch.zeros(bad_shape), 4)


def test_roll_volume_zyx_matches_torch_roll_per_sample():
    torch.manual_seed(1)
    volume = torch.randn(SHAPE)
    shifts = torch.tensor([[1, -5, 7], [-9, 3, 0]])
    rolled = roll_volume_zyx(volume, shifts)
    for b in range(2):
        expected = torch.roll(volume[b], tuple(shifts[b].tolist()), dims=(1, 2, 3))
        assert torch.equal(rolled[b], expected)


def test_patchify_volume_orders_patches_like_the_token_grid():
    volume = torch.randn(SHAPE)
    patches = patchify_volume(volume, 4)
    assert patches.shape == (2, 2, 3, 4, 3 * 64)
    assert torch.equal(patches[1, 1, 2, 3], volume[1, :, 4:8, 8:12, 12:16].flatten())


def test_fixed_grid_selects_offset_zero():
    volume = torch.randn(SHAPE)
    selection = AdaptivePhaseSampler(4, scorer=None)(volume)
    assert selection.volume is volume
    assert selection.scores is None
    assert torch.equal(selection.offsets_zyx, torch.zeros(2, 3, dtype=torch.long))


def test_selected_offset_moves_with_circular_shifts():
    # For a shift s the selected phase k* moves to (k* + s) mod p and the rolled input is the original rolled
    # input rolled by p * floor((k* + s) / p): the identity the encoder's shift equivariance rests on.
    torch.manual_seed(2)
    sampler = AdaptivePhaseSampler(4, NormScorer()).eval()
    volume = torch.randn(SHAPE)
    reference = sampler(volume)
    for shift in [(0, 0, 1), (3, -2, 5), (-7, 11, 2), (4, 8, -4)]:
        shifted = sampler(torch.roll(volume, shift, dims=(2, 3, 4)))
        shift_t = torch.tensor(shift)
        assert torch.equal(shifted.offsets_zyx, (reference.offsets_zyx + shift_t) % 4)
        coarse_roll = torch.div(reference.offsets_zyx + shift_t, 4, rounding_mode="floor")
        assert torch.equal(shifted.volume, roll_volume_zyx(reference.volume, 4 * coarse_roll))


def test_eval_selection_is_the_argmax_and_rolls_it_to_the_origin():
    torch.manual_seed(3)
    sampler = AdaptivePhaseSampler(4, NormScorer()).eval()
    volume = torch.randn(SHAPE)
    selection = sampler(volume)
    best = polyphase_components(volume, 4).flatten(2).norm(dim=2).argmax(dim=1)
    assert torch.equal(selection.offsets_zyx, phase_offsets_zyx(4)[best])
    assert torch.equal(
        polyphase_components(selection.volume, 4)[:, 0], polyphase_components(volume, 4)[[0, 1], best]
    )


def test_gumbel_selection_is_a_hard_roll_with_gradient_to_the_scores():
    torch.manual_seed(4)
    sampler = AdaptivePhaseSampler(2, NormScorer(), temperature=0.5)
    volume = torch.randn(SHAPE, requires_grad=True)
    selection = sampler(volume, "gumbel")
    # Forward: exactly the input rolled by the sampled offset.
    assert torch.equal(selection.volume, roll_volume_zyx(volume.detach(), -selection.offsets_zyx))
    selection.volume.square().sum().backward()
    assert volume.grad is not None and volume.grad.abs().sum() > 0
    assert sampler.log_score_scale.grad is not None and sampler.log_score_scale.grad != 0


def test_scores_are_standardised_over_the_phases_and_scaled():
    torch.manual_seed(7)
    sampler = AdaptivePhaseSampler(2, NormScorer()).double()
    volume = torch.randn(SHAPE, dtype=torch.float64)
    raw = polyphase_components(volume, 2).flatten(2).norm(dim=2)
    expected = (raw - raw.mean(dim=1, keepdim=True)) / raw.std(dim=1, correction=0, keepdim=True)
    torch.testing.assert_close(sampler.score_phases(volume), expected)
    with torch.no_grad():
        sampler.log_score_scale.fill_(1.5)
    torch.testing.assert_close(sampler.score_phases(volume), expected * math.exp(1.5))
    # All phases tie on a constant input: finite zero scores and a finite gradient.
    constant = AdaptivePhaseSampler(2, NormScorer())(torch.ones(2, 1, 4, 4, 4), "gumbel")
    assert torch.equal(constant.scores, torch.zeros(2, 8))
    constant.volume.sum().backward()


def test_mode_is_explicit_and_does_not_follow_training():
    torch.manual_seed(8)
    sampler = AdaptivePhaseSampler(2, NormScorer())
    volume = torch.randn(64, 1, 4, 4, 4)
    best = phase_offsets_zyx(2)[sampler.score_phases(volume).argmax(dim=1)]
    assert torch.equal(sampler.train()(volume).offsets_zyx, best)  # argmax (the default) in train mode
    assert torch.equal(sampler.train()(volume, "argmax").offsets_zyx, best)
    assert not torch.equal(sampler.eval()(volume, "gumbel").offsets_zyx, best)  # samples in eval mode
    with pytest.raises(ValueError):
        sampler(volume, "soft")


def _pick_frequencies(sampler, volume, repeats):
    offsets = sampler(volume.repeat(repeats, 1, 1, 1, 1), "gumbel").offsets_zyx
    picked = offsets[:, 0] * 4 + offsets[:, 1] * 2 + offsets[:, 2]
    return torch.bincount(picked, minlength=8) / repeats


def test_gumbel_picks_are_samples_of_the_tempered_softmax():
    # Gumbel-max: the pick argmax(scores / τ + g) is distributed as softmax(scores / τ).
    torch.manual_seed(5)
    volume = torch.randn(1, 1, 8, 8, 8)
    frequencies = {}
    for temperature in (0.5, 2.0):
        sampler = AdaptivePhaseSampler(2, NormScorer(), temperature=temperature)
        expected = torch.softmax(sampler.score_phases(volume)[0] / temperature, dim=0)
        frequencies[temperature] = _pick_frequencies(sampler, volume, 20_000)
        # 20,000 draws: the standard error of a frequency is at most 0.0035.
        torch.testing.assert_close(frequencies[temperature], expected, rtol=0, atol=0.015)
    # The temperature changes the distribution: colder concentrates on the best-scoring phase.
    best = sampler.score_phases(volume)[0].argmax()
    assert frequencies[0.5][best] > frequencies[2.0][best] + 0.1


def test_straight_through_roll_has_the_soft_selection_gradient():
    torch.manual_seed(6)
    p = 2
    volume = torch.randn(SHAPE, dtype=torch.float64, requires_grad=True)
    weights = torch.softmax(torch.randn(2, p**3, dtype=torch.float64), dim=1).requires_grad_()
    offsets = torch.tensor([[1, 0, 1], [0, 1, 1]])
    upstream = torch.randn(SHAPE, dtype=torch.float64)
    rolled = _StraightThroughRoll.apply(volume, weights, offsets, p)
    assert torch.equal(rolled, roll_volume_zyx(volume.detach(), -offsets))
    grad_volume, grad_weights = torch.autograd.grad((rolled * upstream).sum(), (volume, weights))
    # Reference: the gradient of sum_k w_k roll(volume, -k), materialised.
    candidates = torch.stack(
        [
            torch.roll(volume.detach(), tuple((-offset).tolist()), dims=(2, 3, 4))
            for offset in phase_offsets_zyx(p)
        ],
        dim=1,
    )  # (B, p³, C, D, H, W)
    expected = (upstream[:, None] * candidates).sum(dim=(2, 3, 4, 5))
    torch.testing.assert_close(grad_weights, expected)
    torch.testing.assert_close(grad_volume, roll_volume_zyx(upstream, offsets))


@pytest.mark.parametrize("kwargs", [{"patch_size": 0}, {"patch_size": 4, "temperature": 0.0}])
def test_sampler_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        AdaptivePhaseSampler(scorer=NormScorer(), **kwargs)
