"""Pre-training heads: the MoCo-v3 MLP, the 6D rotation map and the SE(3) pose head."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from aptvit.models.heads import MLPHead, PoseHead, matrix_to_rotation_6d, rotation_6d_to_matrix
from aptvit.rotation import random_rotations


def _assert_proper_rotations(rotation: torch.Tensor, atol: float) -> None:
    eye = torch.eye(3, dtype=rotation.dtype).expand_as(rotation)
    torch.testing.assert_close(rotation.transpose(-1, -2) @ rotation, eye, atol=atol, rtol=0)
    ones = torch.ones(rotation.shape[:-2], dtype=rotation.dtype)
    torch.testing.assert_close(torch.linalg.det(rotation), ones, atol=atol, rtol=0)


def test_mlp_head_has_moco_v3_layout() -> None:
    head = MLPHead(3, 5, 7, 4)
    kinds = [type(layer) for layer in head]
    assert kinds == [nn.Linear, nn.BatchNorm1d, nn.ReLU] * 2 + [nn.Linear, nn.BatchNorm1d]
    assert all(layer.bias is None for layer in head if isinstance(layer, nn.Linear))
    assert head[-1].affine is False and head[1].affine is True
    assert [layer.out_features for layer in head if isinstance(layer, nn.Linear)] == [7, 7, 4]
    assert type(MLPHead(2, 5, 7, 4, last_bn=False)[-1]) is nn.Linear


def test_mlp_head_values() -> None:
    torch.manual_seed(0)
    x = torch.randn(16, 5) * 3 + 2
    linear_only = MLPHead(1, 5, 9, 3, last_bn=False)
    torch.testing.assert_close(linear_only(x), x @ linear_only[0].weight.T)
    # In training the last parameter-free batch norm standardises each output over the batch.
    out = MLPHead(2, 5, 9, 3).train()(x)
    torch.testing.assert_close(out.mean(0), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.var(0, unbiased=False), torch.ones(3), atol=1e-3, rtol=0)


def test_mlp_head_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError, match="num_layers"):
        MLPHead(0, 5, 7, 4)


def test_rotation_6d_hand_computed() -> None:
    # a1 = (2, 0, 0), a2 = (1, 3, 0): Gram-Schmidt gives the identity.
    torch.testing.assert_close(rotation_6d_to_matrix(torch.tensor([2.0, 0, 0, 1, 3, 0])), torch.eye(3))
    # a1 = (0, 0, 5), a2 = (0, 7, 1): b1 = e_x, b2 = e_y, b3 = e_x × e_y in (z, y, x) component order.
    b1, b2 = torch.tensor([0.0, 0, 1]), torch.tensor([0.0, 1, 0])
    expected = torch.stack([b1, b2, torch.tensor([-1.0, 0, 0])], dim=1)
    torch.testing.assert_close(rotation_6d_to_matrix(torch.tensor([0.0, 0, 5, 0, 7, 1])), expected)


def test_rotation_6d_gives_proper_rotations_and_round_trips() -> None:
    generator = torch.Generator().manual_seed(1)
    rotation = rotation_6d_to_matrix(torch.randn(4, 50, 6, generator=generator, dtype=torch.float64))
    _assert_proper_rotations(rotation, atol=1e-12)
    true = random_rotations(50, generator, dtype=torch.float64)
    torch.testing.assert_close(rotation_6d_to_matrix(matrix_to_rotation_6d(true)), true, atol=1e-12, rtol=0)
    with pytest.raises(ValueError, match="last dimension of 6"):
        rotation_6d_to_matrix(torch.zeros(3, 9))


def _tokens(batch: int = 3, side: int = 2, channels: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, side**3, channels, generator=torch.Generator().manual_seed(seed))


def test_pose_head_predicts_proper_rotations_and_gradients_flow() -> None:
    torch.manual_seed(0)
    head = PoseHead(16, hidden_dim=32, num_heads=4, depth=1)
    tokens_a = _tokens(seed=1).requires_grad_()
    tokens_b = _tokens(seed=2).requires_grad_()
    prediction = head(tokens_a, tokens_b)
    assert prediction.rotation.shape == (3, 3, 3) and prediction.translation_vox.shape == (3, 3)
    _assert_proper_rotations(prediction.rotation, atol=1e-5)
    (prediction.rotation.sum() + prediction.translation_vox.sum()).backward()
    for name, parameter in head.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    assert tokens_a.grad.abs().sum() > 0 and tokens_b.grad.abs().sum() > 0


def test_pose_head_starts_near_identity_and_sees_token_positions() -> None:
    torch.manual_seed(0)
    head = PoseHead(16, hidden_dim=32, num_heads=4, depth=1).eval()
    tokens_a, tokens_b = _tokens(seed=1), _tokens(seed=2)
    prediction = head(tokens_a, tokens_b)
    angle = torch.linalg.matrix_norm(prediction.rotation - torch.eye(3), ord="fro")
    assert angle.max() < 0.1 and prediction.translation_vox.abs().max() < 0.1
    # Moving the features of view b to other grid positions changes the prediction: positions matter.
    permuted = head(tokens_a, tokens_b.roll(1, dims=1))
    assert (permuted.rotation - prediction.rotation).abs().max() > 1e-4
    # Swapping the views changes it too (the view embedding tells a from b).
    swapped = head(tokens_b, tokens_a)
    assert (swapped.translation_vox - prediction.translation_vox).abs().max() > 1e-4


def test_pose_head_rejects_bad_tokens() -> None:
    head = PoseHead(16, hidden_dim=32, num_heads=4, depth=1)
    with pytest.raises(ValueError, match="cube"):
        head(torch.zeros(2, 7, 16), torch.zeros(2, 7, 16))
    with pytest.raises(ValueError, match="one shape"):
        head(torch.zeros(2, 8, 16), torch.zeros(2, 27, 16))


def test_pose_head_outputs_float32_rotations_under_bf16_autocast() -> None:
    torch.manual_seed(0)
    head = PoseHead(16, hidden_dim=32, num_heads=4, depth=1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        prediction = head(_tokens(seed=1), _tokens(seed=2))
    assert prediction.rotation.dtype == torch.float32
    _assert_proper_rotations(prediction.rotation, atol=1e-5)
