"""APT-ViT: a Vision Transformer over adaptively phased 3D patches, the encoder of the foundation model.

Input subtomograms `(B, C, D, H, W)` give tokens `(B, N, embed_dim)` and a pooled embedding; with the
adaptive phase sampler both follow circular shifts of the input exactly (see ``phase_sampler.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, Literal, overload

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aptvit.models.patch_embed import PatchEmbed3d
from aptvit.models.phase_sampler import AdaptivePhaseSampler, PhaseMode, PhaseSelection
from aptvit.models.position import ConvPositionEncoding3d

# timm's ViT default: LayerNorm with eps 1e-6.
_LAYER_NORM = partial(nn.LayerNorm, eps=1e-6)


class Attention(nn.Module):
    """Multi-head self-attention through ``scaled_dot_product_attention`` (fused kernels where available).

    Parameters
    ----------
    dim : int
        Token width, divisible by ``num_heads``.
    num_heads : int
        Number of heads.
    qkv_bias : bool
        Whether the query/key/value projection has a bias.
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        if num_heads < 1 or dim % num_heads:
            raise ValueError(f"dim={dim} must be divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, tokens: Tensor) -> Tensor:
        """Attend.

        Parameters
        ----------
        tokens : Tensor
            `(B, N, dim)`.

        Returns
        -------
        Tensor
            `(B, N, dim)`.
        """
        batch, num_tokens, dim = tokens.shape
        qkv = self.qkv(tokens).reshape(batch, num_tokens, 3, self.num_heads, dim // self.num_heads)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, heads, N, head_dim)
        attended = F.scaled_dot_product_attention(query, key, value)
        return self.proj(attended.transpose(1, 2).reshape(batch, num_tokens, dim))


class Mlp(nn.Module):
    """Two-layer perceptron of a transformer block.

    Parameters
    ----------
    dim : int
        Input and output width.
    hidden_dim : int
        Hidden width.
    act_layer : type of nn.Module
        Activation.
    """

    def __init__(self, dim: int, hidden_dim: int, act_layer: type[nn.Module] = nn.GELU) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = act_layer()
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, tokens: Tensor) -> Tensor:
        """Apply the MLP to each token, `(B, N, dim)` -> `(B, N, dim)`."""
        return self.fc2(self.act(self.fc1(tokens)))


class DropPath(nn.Module):
    """Stochastic depth: drop a residual branch for whole samples in training.

    Parameters
    ----------
    drop_prob : float
        Probability in ``[0, 1)`` of dropping the branch for a sample.
    """

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= drop_prob < 1.0:
            raise ValueError(f"drop_prob must be in [0, 1), got {drop_prob}")
        self.drop_prob = drop_prob

    def forward(self, branch: Tensor) -> Tensor:
        """Drop (training) or pass (eval) `(B, ...)`."""
        if self.drop_prob == 0.0 or not self.training:
            return branch
        keep_prob = 1.0 - self.drop_prob
        keep = branch.new_empty((branch.shape[0],) + (1,) * (branch.ndim - 1)).bernoulli_(keep_prob)
        return branch * keep / keep_prob

    def extra_repr(self) -> str:
        """Describe the layer in ``repr``."""
        return f"drop_prob={self.drop_prob}"


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm(x))`` then ``x + mlp(norm(x))``.

    Parameters
    ----------
    dim : int
        Token width.
    num_heads : int
        Attention heads.
    mlp_ratio : float
        MLP hidden width relative to ``dim``.
    qkv_bias : bool
        Bias in the query/key/value projection.
    drop_path : float
        Stochastic-depth probability of both residual branches.
    act_layer : type of nn.Module
        MLP activation.
    norm_layer : callable returning nn.Module
        Normalisation, called with ``dim``.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path: float = 0.0,
        act_layer: type[nn.Module] = nn.GELU,
        norm_layer: Callable[[int], nn.Module] = nn.LayerNorm,
    ) -> None:
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.drop_path1 = DropPath(drop_path)
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer)
        self.drop_path2 = DropPath(drop_path)

    def forward(self, tokens: Tensor) -> Tensor:
        """Transform `(B, N, dim)` -> `(B, N, dim)`."""
        tokens = tokens + self.drop_path1(self.attn(self.norm1(tokens)))
        return tokens + self.drop_path2(self.mlp(self.norm2(tokens)))


class APTViT(nn.Module):
    """Vision Transformer encoder for subtomograms with adaptive phase tokenization.

    Pipeline: phase selection (roll the input to the selected polyphase offset) -> patchify and linear
    embedding -> convolutional position encoding (depthwise, circular: shift-equivariant) -> pre-norm
    transformer blocks -> final norm (``forward_features``) -> mean or max over tokens -> head
    (``forward_head``). Nothing depends on absolute token position and there is no class token, so with a
    shift-invariant phase scorer the tokens follow circular shifts of the input and the pooled embedding
    is invariant to them.

    Parameters
    ----------
    patch_size : int
        Patch size ``p`` in voxels; inputs must have spatial sizes divisible by it.
    phase_scorer : nn.Module or None
        Per-component scorer of the phase sampler (see ``AdaptivePhaseSampler``); None gives the fixed
        patch grid of a plain ViT.
    gumbel_temperature : float
        Temperature of the straight-through Gumbel-softmax of ``phase_mode="gumbel"``.
    in_chans : int
        Input channels.
    embed_dim : int
        Token width.
    depth : int
        Number of transformer blocks.
    num_heads : int
        Attention heads.
    mlp_ratio : float
        MLP hidden width relative to ``embed_dim``.
    qkv_bias : bool
        Bias in the query/key/value projections.
    pos_kernel_size : int
        Taps per axis of the convolutional position encoding (odd).
    global_pool : {"avg", "max"}
        Pooling of the tokens into the embedding.
    num_classes : int
        Size of a linear head after pooling; 0 returns the pooled embedding itself.
    drop_path_rate : float
        Stochastic depth of the last block (linearly increasing from 0 over the blocks).
    act_layer : type of nn.Module
        MLP activation.
    norm_layer : callable returning nn.Module
        Normalisation, called with ``embed_dim``.
    block_fn : type of nn.Module
        Transformer block, constructed like ``Block``.

    Attributes
    ----------
    variant : dict or None
        ``{"name", "overrides"}`` when built by name (``build_encoder``), so a checkpoint can rebuild it.
    """

    variant: dict[str, Any] | None = None

    def __init__(
        self,
        patch_size: int = 4,
        phase_scorer: nn.Module | None = None,
        gumbel_temperature: float = 1.0,
        in_chans: int = 1,
        embed_dim: int = 192,
        depth: int = 12,
        num_heads: int = 3,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        pos_kernel_size: int = 3,
        global_pool: Literal["avg", "max"] = "avg",
        num_classes: int = 0,
        drop_path_rate: float = 0.0,
        act_layer: type[nn.Module] = nn.GELU,
        norm_layer: Callable[[int], nn.Module] = _LAYER_NORM,
        block_fn: type[nn.Module] = Block,
    ) -> None:
        super().__init__()
        if global_pool not in ("avg", "max"):
            raise ValueError(f"global_pool must be 'avg' or 'max', got {global_pool!r}")
        if depth < 1 or num_classes < 0:
            raise ValueError(f"need depth >= 1 and num_classes >= 0, got {depth} and {num_classes}")
        self.patch_size = patch_size
        self.in_chans = in_chans
        self.global_pool = global_pool
        self.num_features = self.embed_dim = embed_dim
        self.phase_sampler = AdaptivePhaseSampler(patch_size, phase_scorer, gumbel_temperature)
        self.patch_embed = PatchEmbed3d(patch_size, in_chans, embed_dim)
        self.pos_embed = ConvPositionEncoding3d(embed_dim, pos_kernel_size)
        drop_path_rates = torch.linspace(0.0, drop_path_rate, depth).tolist()
        self.blocks = nn.Sequential(
            *(
                block_fn(
                    dim=embed_dim,
                    num_heads=num_heads,
                    mlp_ratio=mlp_ratio,
                    qkv_bias=qkv_bias,
                    drop_path=rate,
                    act_layer=act_layer,
                    norm_layer=norm_layer,
                )
                for rate in drop_path_rates
            )
        )
        self.norm = norm_layer(embed_dim)
        self.head: nn.Module = nn.Linear(embed_dim, num_classes) if num_classes else nn.Identity()
        for module in (self.patch_embed, self.blocks, self.head):
            module.apply(_init_weights)

    def token_grid_shape(self, volume_shape: tuple[int, ...] | torch.Size) -> tuple[int, int, int]:
        """Return the token grid ``(nz, ny, nx)`` for an input of shape `(B, C, D, H, W)`."""
        depth, height, width = volume_shape[-3:]
        return depth // self.patch_size, height // self.patch_size, width // self.patch_size

    @overload
    def forward_features(
        self, volume: Tensor, phase_mode: PhaseMode = ..., return_selection: Literal[False] = ...
    ) -> Tensor: ...

    @overload
    def forward_features(
        self, volume: Tensor, phase_mode: PhaseMode = ..., *, return_selection: Literal[True]
    ) -> tuple[Tensor, PhaseSelection]: ...

    @overload
    def forward_features(
        self, volume: Tensor, phase_mode: PhaseMode = ..., return_selection: bool = ...
    ) -> Tensor | tuple[Tensor, PhaseSelection]: ...

    def forward_features(
        self, volume: Tensor, phase_mode: PhaseMode = "argmax", return_selection: bool = False
    ) -> Tensor | tuple[Tensor, PhaseSelection]:
        """Encode a batch into tokens.

        Parameters
        ----------
        volume : Tensor
            `(B, in_chans, D, H, W)`, every spatial size divisible by ``patch_size``.
        phase_mode : {"argmax", "gumbel"}
            Phase selection (see ``AdaptivePhaseSampler``), set by the caller whatever ``self.training``:
            ``"gumbel"`` for the trained (query) encoder, ``"argmax"`` for inference and momentum encoders.
        return_selection : bool
            Also return the phase selection (picked offsets and scores).

        Returns
        -------
        Tensor or (Tensor, PhaseSelection)
            `(B, N, embed_dim)` normalised tokens, ``N = (D/p)(H/p)(W/p)`` in ``(z, y, x)`` raster order of
            the token grid; with ``return_selection`` also the ``PhaseSelection``.
        """
        if volume.ndim != 5 or volume.shape[1] != self.in_chans:
            raise ValueError(
                f"expected input of shape (B, {self.in_chans}, D, H, W), got {tuple(volume.shape)}"
            )
        selection = self.phase_sampler(volume, phase_mode)
        tokens_grid = self.pos_embed(self.patch_embed(selection.volume))
        tokens = self.norm(self.blocks(tokens_grid.flatten(1, 3)))
        return (tokens, selection) if return_selection else tokens

    def forward_head(self, tokens: Tensor, pre_logits: bool = False) -> Tensor:
        """Pool tokens into one embedding per sample and apply the head.

        Parameters
        ----------
        tokens : Tensor
            `(B, N, embed_dim)` from ``forward_features``.
        pre_logits : bool
            Return the pooled embedding `(B, embed_dim)` even when there is a head.

        Returns
        -------
        Tensor
            `(B, embed_dim)`, or `(B, num_classes)` with a head.
        """
        pooled = tokens.mean(dim=1) if self.global_pool == "avg" else tokens.amax(dim=1)
        return pooled if pre_logits else self.head(pooled)

    def forward(self, volume: Tensor, phase_mode: PhaseMode = "argmax") -> Tensor:
        """Embed a batch, `(B, in_chans, D, H, W)` -> `(B, embed_dim)` (or `(B, num_classes)`).

        ``phase_mode`` as in ``forward_features``.
        """
        return self.forward_head(self.forward_features(volume, phase_mode))

    def no_weight_decay(self) -> set[str]:
        """Return the names of parameters exempt from weight decay.

        Biases, normalisation gains and the phase sampler's score scale: every bias, every 0-D parameter and
        the 1-D parameters outside the phase scorer. The scorer's other parameters are weights (the
        steerable convolution keeps its self-connection weight 1-D, hence the exclusion); training gives
        ``phase_sampler.*`` its own parameter group.
        """
        return {
            name
            for name, parameter in self.named_parameters()
            if name.endswith(".bias")
            or parameter.ndim == 0
            or (parameter.ndim == 1 and not name.startswith("phase_sampler.scorer."))
        }


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
