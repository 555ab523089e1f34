"""Adaptive polyphase tokenization: split a volume into its p³ patch-grid phases and pick one per sample.

Rolling the input so that the picked phase sits at offset 0 before patchifying makes the token grid move
with circular shifts of the input, provided the scores are shift-equivariant: phase ``k`` of the input
shifted by ``s`` scores as phase ``(k - s) mod p`` of the original.

For a circular shift ``s`` of the input (``torch.roll`` convention, per axis), phase ``k`` of the shifted
volume is phase ``(k - s) mod p`` of the original, circularly shifted on the coarse grid; a shift-invariant
score of each component alone therefore has that property, and so has any score computed from the whole
volume by circular operations (a low-pass, a smoothing over the phase torus, a circular centroid), the
picked offset becomes ``(k* + s) mod p`` and
the rolled input becomes the original rolled input rolled by ``p * floor((k* + s) / p)`` voxels, i.e. the
token grid is rolled by ``floor((k* + s) / p)`` tokens. This is exact as long as the argmax has no ties;
scores of random float inputs (float round-off ~1e-7 relative) practically never tie, but constant or
symmetric inputs can, and then the first maximal phase wins and equivariance is lost for that input.
"""

from __future__ import annotations

import math
from typing import Any, Literal, NamedTuple

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable


def _check_volume(volume: Tensor, patch_size: int) -> None:
    if patch_size < 1:
        raise ValueError(f"patch_size must be a positive integer, got {patch_size}")
    if volume.ndim != 5:
        raise ValueError(f"expected a volume batch of shape (B, C, D, H, W), got shape {tuple(volume.shape)}")
    if any(size % patch_size for size in volume.shape[2:]):
        raise ValueError(
            f"every spatial size must be divisible by patch_size={patch_size}, got {tuple(volume.shape[2:])}"
        )


def phase_offsets_zyx(patch_size: int, device: torch.device | str | None = None) -> Tensor:
    """Return the ``(z, y, x)`` offset of every polyphase component, in component order.

    Parameters
    ----------
    patch_size : int
        Patch size ``p`` in voxels.
    device : torch.device or str, optional
        Device of the returned tensor.

    Returns
    -------
    Tensor
        `(p³, 3)` int64; row ``k = kz * p² + ky * p + kx`` is ``(kz, ky, kx)``.
    """
    if patch_size < 1:
        raise ValueError(f"patch_size must be a positive integer, got {patch_size}")
    axis = torch.arange(patch_size, device=device)
    grid = torch.meshgrid(axis, axis, axis, indexing="ij")
    return torch.stack(grid, dim=-1).reshape(-1, 3)


def polyphase_components(volume: Tensor, patch_size: int) -> Tensor:
    """Split a volume into its ``p³`` polyphase components.

    Component ``k = kz * p² + ky * p + kx`` holds the voxels whose index is ``(kz, ky, kx)`` modulo ``p``:
    ``components[:, k] == volume[:, :, kz::p, ky::p, kx::p]``.

    Parameters
    ----------
    volume : Tensor
        `(B, C, D, H, W)`, every spatial size divisible by ``patch_size``.
    patch_size : int
        Patch size ``p`` in voxels.

    Returns
    -------
    Tensor
        `(B, p³, C, D/p, H/p, W/p)`.
    """
    _check_volume(volume, patch_size)
    p = patch_size
    batch, channels, depth, height, width = volume.shape
    blocks = volume.reshape(batch, channels, depth // p, p, height // p, p, width // p, p)
    phases_first = blocks.permute(0, 3, 5, 7, 1, 2, 4, 6)
    return phases_first.reshape(batch, p**3, channels, depth // p, height // p, width // p)


def roll_volume_zyx(volume: Tensor, shifts_zyx: Tensor) -> Tensor:
    """Circularly roll each volume of a batch by its own shift (``torch.roll`` convention).

    One gather of the flattened volume at per-sample wrapped indices (no padded copy).

    Parameters
    ----------
    volume : Tensor
        `(B, C, D, H, W)`.
    shifts_zyx : Tensor
        `(B, 3)` integer shifts in voxels; ``out[b, :, i] == volume[b, :, (i - shifts_zyx[b]) mod size]``.

    Returns
    -------
    Tensor
        `(B, C, D, H, W)`.
    """
    if volume.ndim != 5 or shifts_zyx.shape != (volume.shape[0], 3):
        raise ValueError(
            f"expected volume (B, C, D, H, W) and shifts (B, 3), got {tuple(volume.shape)} "
            f"and {tuple(shifts_zyx.shape)}"
        )
    batch, channels, depth, height, width = volume.shape
    flat_index = volume.new_zeros((batch, 1, 1, 1), dtype=torch.int64)
    for axis, (size, stride) in enumerate(((depth, height * width), (height, width), (width, 1))):
        positions = torch.arange(size, device=volume.device)
        wrapped = (positions - shifts_zyx[:, axis : axis + 1]) % size * stride  # (B, size)
        flat_index = flat_index + wrapped.reshape(batch, *(size if dim == axis else 1 for dim in range(3)))
    flat_index = flat_index.reshape(batch, 1, -1).expand(batch, channels, -1)
    return volume.reshape(batch, channels, -1).gather(2, flat_index).reshape(volume.shape)


def _correlation_at_offsets(grad: Tensor, volume: Tensor, patch_size: int) -> Tensor:
    """``sum_i grad[b, :, i] * volume[b, :, i + k]`` (circular) for every offset ``k`` in ``[0, p)³``.

    The cross-spectrum ``conj(FFT(grad)) FFT(volume)`` (formed in place) is transformed back at the ``p³``
    wanted lags only, one axis at a time, z first (three small matrix products instead of a full inverse
    FFT; each cuts its axis from ``size`` to ``p`` frequencies before the next).

    Returns
    -------
    Tensor
        `(B, p³)` in component order ``k = kz * p² + ky * p + kx``.
    """
    dims = (2, 3, 4)
    fft_dtype = torch.promote_types(volume.dtype, torch.float32)  # FFTs need float32 or float64
    cross = torch.fft.rfftn(grad.to(fft_dtype), dim=dims).conj_physical_()
    cross.mul_(torch.fft.rfftn(volume.to(fft_dtype), dim=dims))
    batch, channels, depth, height, width = volume.shape
    lags = torch.arange(patch_size, device=volume.device, dtype=fft_dtype)

    def inverse_dft(size: int, num_frequencies: int) -> Tensor:
        frequencies = torch.arange(num_frequencies, device=volume.device, dtype=fft_dtype)
        return torch.exp(2j * math.pi * lags[:, None] * frequencies[None] / size)  # (lag, frequency)

    def along_axis(matrix: Tensor, field: Tensor) -> Tensor:  # (lag, size) @ (N, size, L), read in place
        return torch.bmm(matrix.expand(field.shape[0], *matrix.shape), field)

    along_z = along_axis(inverse_dft(depth, depth), cross.reshape(batch * channels, depth, -1))
    along_y = along_axis(inverse_dft(height, height), along_z.reshape(-1, height, width // 2 + 1))
    # A real signal's half spectrum: every fx but 0 and the Nyquist one stands for itself and -fx.
    fx = torch.arange(width // 2 + 1, device=volume.device)
    multiplicity = torch.where((fx == 0) | (2 * fx == width), 1.0, 2.0).to(fft_dtype)
    inverse_x = (inverse_dft(width, width // 2 + 1) * multiplicity).T
    along_x = (along_y.reshape(-1, width // 2 + 1) @ inverse_x).real
    return along_x.reshape(batch, channels, -1).sum(dim=1) / (depth * height * width)


class _StraightThroughRoll(torch.autograd.Function):
    """Roll each volume to its selected phase, with the straight-through gradient of the soft selection.

    Forward: exactly ``roll_volume_zyx(volume, -offsets_zyx)``. Backward: the gradient of
    ``sum_k weights[:, k] * roll(volume, -k)``, i.e. ``dL/dweights[:, k] = <dL/dy, roll(volume, -k)>``: the
    circular cross-correlation of the upstream gradient with the input at the ``p³`` candidate offsets,
    computed by FFT instead of materialising ``p³`` rolled copies of the input.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, volume: Tensor, weights: Tensor, offsets_zyx: Tensor, patch_size: int
    ) -> Tensor:
        ctx.save_for_backward(volume, offsets_zyx)
        ctx.patch_size = patch_size
        ctx.weights_dtype = weights.dtype
        return roll_volume_zyx(volume, -offsets_zyx)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_rolled: Tensor) -> tuple[Tensor | None, Tensor, None, None]:  # type: ignore[override]
        volume, offsets_zyx = ctx.saved_tensors
        p = ctx.patch_size
        grad_volume = roll_volume_zyx(grad_rolled, offsets_zyx) if ctx.needs_input_grad[0] else None
        grad_weights = _correlation_at_offsets(grad_rolled, volume, p)
        return grad_volume, grad_weights.to(ctx.weights_dtype), None, None


class PhaseSelection(NamedTuple):
    """Result of adaptive phase selection.

    Attributes
    ----------
    volume : Tensor
        `(B, C, D, H, W)` the input rolled by ``-offsets_zyx``, so that the picked phase sits at offset 0.
    offsets_zyx : Tensor
        `(B, 3)` int64 picked phase offset per sample.
    scores : Tensor or None
        `(B, p³)` the logits the pick used (standardised over the phases and scaled by the learnable
        ``exp(log_score_scale)``, before the temperature); None for the fixed grid.
    """

    volume: Tensor
    offsets_zyx: Tensor
    scores: Tensor | None


class NormScorer(nn.Module):
    """Parameter-free phase score: the L2 norm of each component (adaptive polyphase sampling).

    Chaman & Dokmanić, "Truly shift-invariant convolutional neural networks", CVPR 2021. The ablation of the
    learned steerable scorer: shift- and rotation-invariant by construction.
    """

    def forward(self, volume: Tensor, patch_size: int) -> Tensor:
        """Score every phase of each volume.

        Parameters
        ----------
        volume : Tensor
            `(B, C, D, H, W)`, every spatial size divisible by ``patch_size``.
        patch_size : int
            Patch size ``p``.

        Returns
        -------
        Tensor
            `(B, p³)` L2 norm of each polyphase component, in component order.
        """
        _check_volume(volume, patch_size)
        p = patch_size
        batch, _, depth, height, width = volume.shape
        # The squares summed over the coarse index of each axis in turn (z, y, x = p * coarse + phase), each
        # a reduction of a leading axis over long contiguous rows; a norm over the interleaved axes is ~20x
        # slower on the CPU.
        power = volume.square().sum(dim=1)  # (B, D, H, W)
        power = power.reshape(batch, depth // p, -1).sum(dim=1)  # (B, kz, H, W)
        power = power.reshape(batch, p, height // p, -1).sum(dim=2)  # (B, kz, ky, W)
        power = power.reshape(batch, p * p, width // p, p).sum(dim=2)  # (B, kz, ky, kx)
        return power.reshape(batch, p**3).sqrt()


PhaseMode = Literal["argmax", "gumbel"]


class AdaptivePhaseSampler(nn.Module):
    """Pick one polyphase component per sample and roll the input so that it sits at offset 0.

    The caller chooses the mode (it does not follow ``self.training``): ``"argmax"`` picks the
    highest-scoring phase (inference, and the momentum encoder in training); ``"gumbel"`` draws a
    straight-through Gumbel-softmax sample with logits ``scores / temperature``: the forward pass rolls
    exactly by ``argmax(scores / temperature + g)`` (``g`` standard Gumbel noise, so the pick is a sample of
    ``softmax(scores / temperature)``), the backward pass sends the gradient of the soft weights
    ``softmax(scores / temperature + g)`` to the scorer and the score scale.

    The scorer's raw scores are standardised over the ``p³`` phases of each sample (zero mean, unit
    standard deviation) and multiplied by the learnable ``exp(log_score_scale)`` (1 at initialisation), so
    that the logits span O(1) next to the Gumbel noise (standard deviation 1.28) whatever the scorer's
    output range; a positive affine map of the raw scores leaves the argmax unchanged. Scoring runs with
    autocast disabled in the module's precision, float32 at least: under bf16 the scores would tie far more
    often, and a tie breaks shift equivariance.

    Parameters
    ----------
    patch_size : int
        Patch size ``p`` in voxels; there are ``p³`` phases.
    scorer : nn.Module or None
        Maps ``(volume (B, C, D, H, W), patch_size)`` to raw scores `(B, p³)` of the polyphase components
        in component order, shift-equivariant (see the module): e.g. a score of component ``k`` alone that is
        invariant to its circular shifts (``NormScorer``, ``SteerableScorer`` by default). None gives the
        fixed grid (offset 0 always, the plain-ViT baseline).
    temperature : float
        Gumbel-softmax temperature (> 0) of the ``"gumbel"`` mode.
    """

    offsets_zyx: Tensor

    def __init__(self, patch_size: int, scorer: nn.Module | None, temperature: float = 1.0) -> None:
        super().__init__()
        if patch_size < 1:
            raise ValueError(f"patch_size must be a positive integer, got {patch_size}")
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.patch_size = patch_size
        self.scorer = scorer
        self.temperature = temperature
        self.log_score_scale = nn.Parameter(torch.zeros(())) if scorer is not None else None
        self.register_buffer("offsets_zyx", phase_offsets_zyx(patch_size), persistent=False)

    def score_phases(self, volume: Tensor) -> Tensor:
        """Score every polyphase component of each sample: the logits of the selection.

        Parameters
        ----------
        volume : Tensor
            `(B, C, D, H, W)`.

        Returns
        -------
        Tensor
            `(B, p³)` standardised, scaled scores in the sampler's precision (float32, or float64 when the
            module is double), whatever the autocast state.
        """
        if self.scorer is None or self.log_score_scale is None:
            raise ValueError("the fixed-grid sampler has no scorer")
        dtype = torch.promote_types(self.log_score_scale.dtype, torch.float32)
        with torch.autocast(device_type=volume.device.type, enabled=False):
            raw = self.scorer(volume.to(dtype), self.patch_size)
            variance, mean = torch.var_mean(raw, dim=1, correction=0, keepdim=True)
            # Differences below the round-off of the raw scores are noise; the floor also keeps the value and
            # the gradient finite when all phases tie (a constant input).
            finfo = torch.finfo(dtype)
            round_off = finfo.eps * raw.detach().abs().amax(dim=1, keepdim=True)
            floor = round_off.square().clamp_min(math.sqrt(finfo.tiny))
            standardised = (raw - mean) * torch.rsqrt(torch.maximum(variance, floor))
            return standardised * self.log_score_scale.exp()

    def forward(self, volume: Tensor, mode: PhaseMode = "argmax") -> PhaseSelection:
        """Select a phase per sample and roll the input to it.

        Parameters
        ----------
        volume : Tensor
            `(B, C, D, H, W)`, every spatial size divisible by ``patch_size``.
        mode : {"argmax", "gumbel"}
            Hard argmax of the scores, or a straight-through Gumbel-softmax sample (see the class).

        Returns
        -------
        PhaseSelection
            The rolled volume, the picked offsets and the scores.
        """
        if mode not in ("argmax", "gumbel"):
            raise ValueError(f"mode must be 'argmax' or 'gumbel', got {mode!r}")
        _check_volume(volume, self.patch_size)
        if self.scorer is None:
            offsets = self.offsets_zyx.new_zeros(volume.shape[0], 3)
            return PhaseSelection(volume, offsets, None)
        scores = self.score_phases(volume)
        if mode == "argmax":
            offsets = self.offsets_zyx[scores.argmax(dim=1)]
            return PhaseSelection(roll_volume_zyx(volume, -offsets), offsets, scores)
        # Standard Gumbel noise -log(E), E = -log(U) exponential; U = 0 gives -inf, a phase never picked.
        gumbel = -torch.rand_like(scores).log_().neg_().log_()
        perturbed = scores / self.temperature + gumbel
        offsets = self.offsets_zyx[perturbed.argmax(dim=1)]
        weights = torch.softmax(perturbed, dim=1)
        rolled = _StraightThroughRoll.apply(volume, weights, offsets, self.patch_size)
        return PhaseSelection(rolled, offsets, scores)

    def extra_repr(self) -> str:
        """Describe the sampler in ``repr``."""
        return f"patch_size={self.patch_size}, temperature={self.temperature}"
