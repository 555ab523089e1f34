"""SO(3)-steerable voxel convolutions (e3nn) and the rotation-invariant phase scorer built from them.

The only module that imports e3nn. Kernels are radial basis x spherical harmonics sampled on a centred,
odd-sized grid, so the 24 rotations of the voxel grid act on them exactly; padding is circular, so every
layer commutes with circular shifts, and the scorer ends in norms and global pooling (invariant to both).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from e3nn import o3
from e3nn.math import normalize2mom, soft_one_hot_linspace
from torch import Tensor, nn


class SteerableConv3d(nn.Module):
    """SO(3)-steerable 3D convolution with circular padding, after e3nn's voxel ``Convolution``.

    The kernel at lattice offset ``r`` is ``sum_b radial_b(|r|) TP(Y(r/|r|))``: a learned combination of
    radial basis functions times a tensor product with the spherical harmonics of the offset direction.
    Lattice offsets are in voxels with components ordered like the array axes ``(z, y, x)``; the centre
    tap (zero offset, where every radial basis function vanishes) is an equivariant linear self-connection.

    Parameters
    ----------
    irreps_in : str or o3.Irreps
        Irreps of the input field (channels of the input).
    irreps_out : str or o3.Irreps
        Irreps of the output field.
    kernel_size : int
        Odd number of taps per axis (an even kernel has no centre voxel and breaks equivariance).
    lmax : int
        Highest spherical-harmonic degree in the kernel.
    num_radial_basis : int
        Number of smooth radial basis functions spanning the kernel cube.
    """

    radial: Tensor
    harmonics: Tensor

    def __init__(
        self,
        irreps_in: str | o3.Irreps,
        irreps_out: str | o3.Irreps,
        kernel_size: int = 3,
        lmax: int = 2,
        num_radial_basis: int = 3,
    ) -> None:
        super().__init__()
        if kernel_size < 3 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and >= 3, got {kernel_size}")
        if lmax < 0 or num_radial_basis < 1:
            raise ValueError(f"need lmax >= 0 and num_radial_basis >= 1, got {lmax} and {num_radial_basis}")
        self.irreps_in = o3.Irreps(irreps_in)
        self.irreps_out = o3.Irreps(irreps_out)
        self.kernel_size = kernel_size
        half = kernel_size // 2
        taps = torch.arange(-half, half + 1, dtype=torch.float64)
        lattice_zyx = torch.stack(torch.meshgrid(taps, taps, taps, indexing="ij"), dim=-1)  # (k, k, k, 3)
        # The radial support reaches past the cube's corners so that every basis function sees some tap.
        radius = kernel_size / 2 * math.sqrt(3)
        radial = soft_one_hot_linspace(
            lattice_zyx.norm(dim=-1), 0.0, radius, num_radial_basis, basis="smooth_finite", cutoff=True
        )
        harmonics = o3.spherical_harmonics(
            o3.Irreps.spherical_harmonics(lmax), lattice_zyx, normalize=True, normalization="component"
        )
        self.register_buffer("radial", radial.float(), persistent=False)  # (k, k, k, num_radial_basis)
        self.register_buffer("harmonics", harmonics.float(), persistent=False)  # (k, k, k, (lmax + 1)²)
        self.tensor_product = o3.FullyConnectedTensorProduct(
            self.irreps_in,
            o3.Irreps.spherical_harmonics(lmax),
            self.irreps_out,
            shared_weights=False,
            compile_left_right=True,
            compile_right=True,
        )
        self.radial_weight = nn.Parameter(torch.randn(num_radial_basis, self.tensor_product.weight_numel))
        self.self_connection = o3.Linear(self.irreps_in, self.irreps_out)

    def kernel(self) -> Tensor:
        """Assemble the dense convolution kernel.

        Returns
        -------
        Tensor
            `(irreps_out.dim, irreps_in.dim, k, k, k)`.
        """
        weight = self.radial @ self.radial_weight / self.kernel_size**3
        kernel = self.tensor_product.right(self.harmonics, weight)  # (k, k, k, in, out)
        # Every radial basis function vanishes at the centre tap; the self-connection fills it.
        identity = torch.eye(self.irreps_in.dim, device=kernel.device, dtype=kernel.dtype)
        half = self.kernel_size // 2
        centre = F.pad(self.self_connection(identity)[None, None, None], (0, 0, 0, 0) + (half, half) * 3)
        return torch.einsum("zyxio->oizyx", kernel + centre)

    def forward(self, field: Tensor) -> Tensor:
        """Convolve a steerable field, wrapping around the borders.

        Parameters
        ----------
        field : Tensor
            `(N, irreps_in.dim, d, h, w)`.

        Returns
        -------
        Tensor
            `(N, irreps_out.dim, d, h, w)`.
        """
        half = self.kernel_size // 2
        return F.conv3d(F.pad(field, (half,) * 6, mode="circular"), self.kernel())

    def extra_repr(self) -> str:
        """Describe the convolution in ``repr``."""
        return f"{self.irreps_in} -> {self.irreps_out}, kernel_size={self.kernel_size}"


class GatedActivation(nn.Module):
    """Gate nonlinearity on channel-first fields, as e3nn's ``Gate`` (Weiler et al. 2018).

    The input holds scalars, gates (one ``0e`` per gated irrep) and gated ``l > 0`` irreps, in this order;
    the output holds ``scalar_act(scalars)`` and ``gate_act(gate) * irrep``. Activations are normalised to
    unit second moment like e3nn's. It works on `(N, C, d, h, w)` without e3nn's channels-last sorting and
    code-generated products, which took most of the scorer's CPU time in profiling.

    Parameters
    ----------
    irreps_scalars : o3.Irreps
        Scalar channels, all ``0e``.
    irreps_gated : o3.Irreps
        Gated channels, all ``l > 0``.
    scalar_act : callable
        Activation of the scalars.
    gate_act : callable
        Activation of the gates.
    """

    gate_index: Tensor

    def __init__(
        self,
        irreps_scalars: o3.Irreps,
        irreps_gated: o3.Irreps,
        scalar_act: Callable[[Tensor], Tensor],
        gate_act: Callable[[Tensor], Tensor],
    ) -> None:
        super().__init__()
        if any(ir != o3.Irrep("0e") for _, ir in irreps_scalars) or any(ir.l == 0 for _, ir in irreps_gated):
            raise ValueError(
                f"need 0e scalars and l > 0 gated irreps, got {irreps_scalars} and {irreps_gated}"
            )
        irreps_gates = o3.Irreps(f"{irreps_gated.num_irreps}x0e")
        self.irreps_in = (irreps_scalars + irreps_gates + irreps_gated).simplify()
        self.irreps_out = (irreps_scalars + irreps_gated).simplify()
        self.split_sizes = [irreps_scalars.dim, irreps_gates.dim, irreps_gated.dim]
        self.scalar_act = normalize2mom(scalar_act)
        self.gate_act = normalize2mom(gate_act)
        # Gated channel c (mul-major e3nn layout) is scaled by gate gate_index[c].
        dims = torch.tensor([ir.dim for mul, ir in irreps_gated for _ in range(mul)], dtype=torch.long)
        self.register_buffer(
            "gate_index", torch.repeat_interleave(torch.arange(len(dims)), dims), persistent=False
        )

    def forward(self, field: Tensor) -> Tensor:
        """Apply the gate, `(N, irreps_in.dim, ...)` -> `(N, irreps_out.dim, ...)`."""
        scalars, gates, gated = field.split(self.split_sizes, dim=1)
        gates = self.gate_act(gates).index_select(1, self.gate_index)
        return torch.cat([self.scalar_act(scalars), gated * gates], dim=1)


def irrep_norms(field: Tensor, irreps: o3.Irreps) -> Tensor:
    """Return the norm of every irrep of a channel-first field (rotation-invariant), as e3nn's ``Norm``.

    Parameters
    ----------
    field : Tensor
        `(N, irreps.dim, ...)` in e3nn's mul-major layout.
    irreps : o3.Irreps
        Irreps of the channels.

    Returns
    -------
    Tensor
        `(N, irreps.num_irreps, ...)`.
    """
    norms = []
    for block, (mul, ir) in zip(field.split([mul_ir.dim for mul_ir in irreps], dim=1), irreps, strict=True):
        squared = block.reshape(block.shape[0], mul, ir.dim, *block.shape[2:]).square().sum(dim=2)
        norms.append(squared.relu().sqrt())  # relu keeps the gradient finite at zero, as in e3nn
    return torch.cat(norms, dim=1)


class SteerableScorer(nn.Module):
    """Rotation- and shift-invariant score of a scalar volume, from SO(3)-steerable convolutions.

    ``num_layers`` gated steerable convolutions (scalar input, higher-order fields inside) are followed by
    the norm of every irrep (rotation-invariant), a mean over all voxels (shift-invariant) and a linear map
    to one score. Invariance is exact for the 24 rotations of the voxel grid and for circular shifts, up to
    float round-off.

    Parameters
    ----------
    in_chans : int
        Number of scalar input channels.
    irreps_hidden : str or o3.Irreps
        Irreps of the hidden fields; must contain scalars (``0e``) and may contain any ``l > 0``.
    num_layers : int
        Number of gated steerable convolutions.
    kernel_size : int
        Odd taps per axis of every convolution.
    lmax : int
        Highest spherical-harmonic degree in the kernels.
    scalar_act : callable
        Activation of the scalar channels.
    gate_act : callable
        Activation of the gates that scale the ``l > 0`` channels.
    """

    def __init__(
        self,
        in_chans: int = 1,
        irreps_hidden: str | o3.Irreps = "4x0e + 2x1o + 1x2e",
        num_layers: int = 2,
        kernel_size: int = 3,
        lmax: int = 2,
        scalar_act: Callable[[Tensor], Tensor] = F.silu,
        gate_act: Callable[[Tensor], Tensor] = torch.sigmoid,
    ) -> None:
        super().__init__()
        irreps_hidden = o3.Irreps(irreps_hidden).simplify()
        if in_chans < 1 or num_layers < 1:
            raise ValueError(f"need in_chans >= 1 and num_layers >= 1, got {in_chans} and {num_layers}")
        if not any(ir.l == 0 for _, ir in irreps_hidden):
            raise ValueError(f"irreps_hidden must contain scalars (0e), got {irreps_hidden}")
        self.irreps_in = o3.Irreps(f"{in_chans}x0e")
        scalars = o3.Irreps([(mul, ir) for mul, ir in irreps_hidden if ir.l == 0])
        gated = o3.Irreps([(mul, ir) for mul, ir in irreps_hidden if ir.l > 0])
        convs, gates = [], []
        irreps = self.irreps_in
        for _ in range(num_layers):
            gate = GatedActivation(scalars, gated, scalar_act, gate_act)
            convs.append(SteerableConv3d(irreps, gate.irreps_in, kernel_size, lmax))
            gates.append(gate)
            irreps = gate.irreps_out
        self.irreps_hidden = irreps
        self.convs = nn.ModuleList(convs)
        self.gates = nn.ModuleList(gates)
        # No bias: a constant added to every phase score changes nothing (the softmax ignores it).
        self.head = nn.Linear(irreps.num_irreps, 1, bias=False)

    def forward(self, volume: Tensor) -> Tensor:
        """Score each volume of a batch.

        Parameters
        ----------
        volume : Tensor
            `(N, in_chans, d, h, w)`.

        Returns
        -------
        Tensor
            `(N,)` scores.
        """
        if volume.ndim != 5 or volume.shape[1] != self.irreps_in.dim:
            raise ValueError(
                f"expected volumes of shape (N, {self.irreps_in.dim}, d, h, w), got {tuple(volume.shape)}"
            )
        field = volume
        for conv, gate in zip(self.convs, self.gates, strict=True):
            field = gate(conv(field))
        pooled = irrep_norms(field, self.irreps_hidden).mean(dim=(2, 3, 4))
        return self.head(pooled).squeeze(-1)
