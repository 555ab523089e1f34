"""Encoder contract over every variant, exact shift invariance, gradients, bf16, CPU/GPU parity."""

import copy
import io
import pickle

import pytest
import torch

from aptvit import APTViT, create_encoder, list_encoders

# Expected parameter counts (millions) of the registered widths: ViT-Ti/S/B and the demo's nano, plus the
# small phase scorer.
PARAMS_M = {"nano": (0.45, 0.55), "tiny": (5.0, 6.0), "small": (21.0, 22.0), "base": (85.0, 86.0)}

SELECTORS = ["steerable", "norm", "fixed"]

# Cheap overrides for the contract over every variant and selector: 48 is divisible by 3, 6 and 12 heads.
SMALL = {"embed_dim": 48, "depth": 1}

# Circular shifts (z, y, x) in voxels: multiples of p = 4 and not, negative, and larger than p.
SHIFTS = [(0, 0, 1), (1, 2, 3), (-5, 7, 2), (4, -8, 12), (13, 0, -6)]

# Non-cubic so that axis-order bugs show; every size divisible by 8.
VOLUME_SHAPE = (2, 1, 16, 24, 32)


@pytest.mark.parametrize("name", list_encoders())
def test_encoder_contract(name):
    torch.manual_seed(0)
    model = create_encoder(name).eval()
    num_params = sum(parameter.numel() for parameter in model.parameters())
    print(f"{name}: {num_params:,} parameters")
    low, high = PARAMS_M[name.split("_")[1]]
    assert low * 1e6 < num_params < high * 1e6
    volume = torch.randn(1, 1, 32, 32, 32)
    with torch.no_grad():
        tokens = model.forward_features(volume)
        embedding = model.forward_head(tokens)
        again = model(volume)
    assert tokens.shape == (1, (32 // model.patch_size) ** 3, model.embed_dim)
    assert model.token_grid_shape(volume.shape) == (32 // model.patch_size,) * 3
    assert embedding.shape == (1, model.num_features)
    assert torch.isfinite(tokens).all()
    assert torch.equal(embedding, again)  # deterministic in eval


def _round_trips(model):
    """The module after deepcopy, pickle and torch.save + torch.load."""
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    return {
        "deepcopy": copy.deepcopy(model),
        "pickle": pickle.loads(pickle.dumps(model)),
        "torch.save": torch.load(buffer, weights_only=False),
    }


@pytest.mark.parametrize("phase_selector", SELECTORS)
@pytest.mark.parametrize("name", list_encoders())
def test_encoder_copies_pickles_saves_and_runs_in_double(name, phase_selector):
    # What training needs: a momentum encoder (deepcopy), ddp_spawn (pickle), checkpoints (torch.save), and
    # float64 for gradient checks.
    torch.manual_seed(0)
    model = create_encoder(name, phase_selector=phase_selector, **SMALL).train()
    volume = torch.randn(2, 1, 16, 16, 16)
    with torch.no_grad():
        tokens, selection = model.forward_features(volume, return_selection=True)
    for how, copied in _round_trips(model).items():
        copied_tokens, copied_selection = copied.forward_features(volume, return_selection=True)
        assert torch.equal(copied_tokens, tokens), how
        assert torch.equal(copied_selection.offsets_zyx, selection.offsets_zyx), how
    double = copy.deepcopy(model).double()
    with torch.no_grad():
        double_tokens, double_selection = double.forward_features(volume.double(), return_selection=True)
    assert double_tokens.dtype == torch.float64
    if phase_selector != "fixed":
        assert double_selection.scores.dtype == torch.float64 and selection.scores.dtype == torch.float32
        torch.testing.assert_close(double_selection.scores.float(), selection.scores, rtol=1e-4, atol=1e-4)
    assert torch.equal(double_selection.offsets_zyx, selection.offsets_zyx)
    torch.testing.assert_close(double_tokens.float(), tokens, rtol=1e-4, atol=1e-4)
    # Backward through the Gumbel path reaches every parameter.
    embedding = double(volume.double(), phase_mode="gumbel")
    (embedding * torch.randn_like(embedding)).sum().backward()
    for parameter_name, parameter in double.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, parameter_name


def test_selection_mode_is_set_by_the_caller_not_by_training():
    torch.manual_seed(7)
    model = create_encoder("aptvit_tiny", **SMALL)
    volume = torch.randn(16, 1, 16, 16, 16)
    with torch.no_grad():
        _, reference = model.eval().forward_features(volume, return_selection=True)
        train_tokens, train_argmax = model.train().forward_features(volume, return_selection=True)
        assert torch.equal(train_argmax.offsets_zyx, reference.offsets_zyx)  # a key encoder in train mode
        _, sampled = model.eval().forward_features(volume, "gumbel", return_selection=True)
        assert not torch.equal(sampled.offsets_zyx, reference.offsets_zyx)  # samples even in eval mode
        assert torch.equal(model.forward_head(train_tokens), model.train()(volume))
    assert reference.scores.shape == (16, 64)


def _relative_change(changed, reference):
    return ((changed - reference).norm() / reference.norm()).item()


@pytest.mark.parametrize(
    ("name", "phase_selector"),
    [("aptvit_tiny", "steerable"), ("aptvit_tiny", "norm"), ("aptvit_tiny_p8", "steerable")],
)
def test_tokens_follow_circular_shifts_and_embedding_is_invariant(name, phase_selector):
    torch.manual_seed(1)
    model = create_encoder(name, phase_selector=phase_selector).eval()
    p = model.patch_size
    volume = torch.randn(VOLUME_SHAPE)
    batch = torch.cat([volume] + [torch.roll(volume, shift, dims=(2, 3, 4)) for shift in SHIFTS])
    with torch.no_grad():
        tokens = model.forward_features(batch)
        embeddings = model.forward_head(tokens)
        offsets = model.phase_sampler(volume, "argmax").offsets_zyx
    grid = tokens.reshape(len(batch), *model.token_grid_shape(batch.shape), -1)
    reference_grid, reference_embedding = grid[:2], embeddings[:2]
    for index, shift in enumerate(SHIFTS, start=1):
        shifted = slice(2 * index, 2 * index + 2)
        assert _relative_change(embeddings[shifted], reference_embedding) <= 1e-5, shift
        # Token grid of the shifted input = original token grid rolled by floor((k* + s) / p) per axis.
        token_rolls = torch.div(offsets + torch.tensor(shift), p, rounding_mode="floor")
        for b in range(2):
            expected = torch.roll(reference_grid[b], tuple(token_rolls[b].tolist()), dims=(0, 1, 2))
            assert _relative_change(grid[shifted][b], expected) <= 1e-5, shift


def test_fixed_grid_baseline_is_not_shift_invariant():
    # The same check fails for a plain ViT, except for shifts that are multiples of the patch size.
    torch.manual_seed(2)
    model = create_encoder("aptvit_tiny", phase_selector="fixed").eval()
    volume = torch.randn(VOLUME_SHAPE)
    batch = torch.cat([volume] + [torch.roll(volume, shift, dims=(2, 3, 4)) for shift in SHIFTS])
    with torch.no_grad():
        embeddings = model(batch)
    for index, shift in enumerate(SHIFTS, start=1):
        change = _relative_change(embeddings[2 * index : 2 * index + 2], embeddings[:2])
        if all(s % model.patch_size == 0 for s in shift):
            assert change <= 1e-5, shift
        else:
            assert change > 1e-3, shift


def test_every_parameter_gets_a_gradient_through_the_gumbel_path():
    torch.manual_seed(3)
    model = create_encoder("aptvit_tiny", gumbel_temperature=0.5, drop_path_rate=0.1).train()
    embedding = model(torch.randn(4, 1, 16, 16, 16), phase_mode="gumbel")
    (embedding * torch.randn_like(embedding)).sum().backward()
    scorer_params = {f"phase_sampler.{name}" for name, _ in model.phase_sampler.named_parameters()}
    assert scorer_params  # the steerable scorer's parameters are reached only through the soft weights
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name


def test_bf16_autocast_forward_and_backward_are_finite():
    torch.manual_seed(4)
    model = create_encoder("aptvit_tiny").train()
    volume = torch.randn(2, 1, 16, 16, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        embedding, selection = model.forward_features(volume, "gumbel", return_selection=True)
        embedding = model.forward_head(embedding)
        loss = (embedding.float() * torch.randn(embedding.shape)).sum()
    assert embedding.dtype == torch.bfloat16
    assert selection.scores.dtype == torch.float32  # the scorer stays float32 under autocast
    assert torch.isfinite(embedding).all()
    loss.backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name


def test_head_and_pooling_options():
    torch.manual_seed(5)
    volume = torch.randn(3, 1, 16, 16, 16)
    model = create_encoder("aptvit_tiny", depth=1, num_classes=7, global_pool="max").eval()
    with torch.no_grad():
        tokens = model.forward_features(volume)
        assert model.forward_head(tokens).shape == (3, 7)
        torch.testing.assert_close(model.forward_head(tokens, pre_logits=True), tokens.amax(dim=1))


def test_no_weight_decay_names_biases_and_norm_gains_only():
    model = create_encoder("aptvit_tiny", depth=2)
    names = model.no_weight_decay()
    parameters = dict(model.named_parameters())
    assert {"blocks.0.norm1.weight", "blocks.0.attn.qkv.bias", "norm.bias"} <= names <= set(parameters)
    assert "blocks.0.attn.qkv.weight" not in names and "phase_sampler.log_score_scale" in names
    assert "phase_sampler.scorer.mlp.0.bias" in names
    assert "phase_sampler.scorer.conv.self_weight" not in names  # a 1-D weight
    assert all(parameters[name].ndim <= 1 for name in names)


def test_scorer_size_is_configurable_through_the_registry():
    default = create_encoder("aptvit_tiny", depth=1).phase_sampler
    small = create_encoder(
        "aptvit_tiny", depth=1, scorer_kwargs={"irreps_hidden": "2x0e + 1x1o", "hidden_dim": 4}
    ).phase_sampler
    assert 0 < sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in default.parameters())
    with pytest.raises(ValueError):
        create_encoder("aptvit_tiny", phase_selector="norm", scorer_kwargs={"hidden_dim": 4})


def test_encoder_rejects_bad_input_and_names():
    model = create_encoder("aptvit_tiny", depth=1)
    with pytest.raises(ValueError):
        model(torch.zeros(1, 2, 16, 16, 16))  # wrong channel count
    with pytest.raises(ValueError):
        model(torch.zeros(1, 1, 16, 16, 18))  # not divisible by p
    with pytest.raises(ValueError):
        create_encoder("vit_huge")
    with pytest.raises(ValueError):
        create_encoder("aptvit_tiny", phase_selector="random")
    with pytest.raises(ValueError):
        APTViT(global_pool="token")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs torch with CUDA")
def test_cuda_forward_matches_cpu():
    # fp32 with TF32 disabled: the two devices agree to 1e-4 (absolute, tokens are layer-normalised ~1) and
    # pick the same phases.
    torch.manual_seed(6)
    model = create_encoder("aptvit_tiny").eval()
    volume = torch.randn(4, 1, 32, 32, 32)
    matmul_tf32, cudnn_tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        with torch.no_grad():
            cpu_tokens = model.forward_features(volume)
            cpu_offsets = model.phase_sampler(volume).offsets_zyx
            model.cuda()
            cuda_tokens = model.forward_features(volume.cuda()).cpu()
            cuda_offsets = model.phase_sampler(volume.cuda()).offsets_zyx.cpu()
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul_tf32, cudnn_tf32
    assert torch.equal(cuda_offsets, cpu_offsets)
    torch.testing.assert_close(cuda_tokens, cpu_tokens, rtol=1e-4, atol=1e-4)
