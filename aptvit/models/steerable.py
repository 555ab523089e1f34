"""SO(3)-steerable voxel convolutions (e3nn) and the rotation-invariant phase scorer built from them.

The only module that imports e3nn. Kernels are radial basis x spherical harmonics sampled on a centred,
odd-sized grid, so the 24 rotations of the voxel grid act on them exactly; padding is circular, so the
convolution commutes with circular shifts. The scorer pools the energy of each output irrep over the whole
(circular) component, which it computes in Fourier space (Parseval): invariant to both, and cheap.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from e3nn import o3
from e3nn.math import soft_one_hot_linspace
from torch import Tensor, nn


class SteerableConv3d(nn.Module):
    """SO(3)-steerable 3D convolution with circular padding, after e3nn's voxel ``Convolution``.

    The kernel at lattice offset ``r`` is ``sum_b radial_b(|r|) TP(Y(r/|r|))``: a learned combination of
    radial basis functions times a tensor product with the spherical harmonics of the offset direction.
    Lattice offsets are in voxels with components ordered like the array axes ``(z, y, x)``; the centre
    tap (zero offset, where every radial basis function vanishes) is an equivariant linear self-connection.
    The kernel is linear in the parameters, so e3nn evaluates it once, at construction, on every unit
    parameter vector; ``kernel()`` is then one contraction (fast, and the module deep-copies and pickles
    like any other).

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

    tap_basis: Tensor
    self_basis: Tensor

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
        )  # (k, k, k, num_radial_basis)
        harmonics = o3.spherical_harmonics(
            o3.Irreps.spherical_harmonics(lmax), lattice_zyx, normalize=True, normalization="component"
        )  # (k, k, k, (lmax + 1)²)
        tensor_product = o3.FullyConnectedTensorProduct(
            self.irreps_in,
            o3.Irreps.spherical_harmonics(lmax),
            self.irreps_out,
            shared_weights=False,
            compile_left_right=False,
            compile_right=True,
        ).double()
        num_weights = tensor_product.weight_numel
        unit_weights = torch.eye(num_weights, dtype=torch.float64)[:, None, None, None, :]
        per_weight = tensor_product.right(harmonics, unit_weights.expand(-1, *harmonics.shape[:3], -1))
        # tap_basis[b, w]: the kernel of radial basis b and tensor-product weight w, (b, w, k, k, k, in, out).
        tap_basis = radial.movedim(-1, 0)[:, None, ..., None, None] * per_weight[None] / kernel_size**3
        linear = o3.Linear(self.irreps_in, self.irreps_out).double()
        identity = torch.eye(self.irreps_in.dim, dtype=torch.float64)
        self_basis = []
        with torch.no_grad():
            for unit in torch.eye(linear.weight.numel(), dtype=torch.float64):
                linear.weight.copy_(unit)
                self_basis.append(linear(identity))
        # float64 so that a double module is equivariant to float64 round-off; kernel() casts.
        self.register_buffer("tap_basis", tap_basis, persistent=False)
        self.register_buffer("self_basis", torch.stack(self_basis), persistent=False)  # (l, in, out)
        self.radial_weight = nn.Parameter(torch.randn(num_radial_basis, num_weights))
        self.self_weight = nn.Parameter(torch.randn(len(self_basis)))

    def kernel(self) -> Tensor:
        """Assemble the dense convolution kernel.

        Returns
        -------
        Tensor
            `(irreps_out.dim, irreps_in.dim, k, k, k)`, in the parameters' dtype.
        """
        dtype = self.radial_weight.dtype
        kernel = torch.einsum("bw,bwzyxio->oizyx", self.radial_weight, self.tap_basis.to(dtype))
        # Every radial basis function vanishes at the centre tap; the self-connection fills it.
        half = self.kernel_size // 2
        centre = torch.einsum("l,lio->oi", self.self_weight, self.self_basis.to(dtype))
        return kernel + F.pad(centre[..., None, None, None], (half, half) * 3)

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


def _real_dft_matrix(size: int) -> tuple[Tensor, Tensor]:
    """Orthonormal real Fourier basis of a circular axis, one vector per row, and each row's ``|f|``.

    Rows: the constant; a cosine and a sine for every ``0 < f < size / 2``; the alternating vector
    (``f = size / 2``) when ``size`` is even. The rows of one ``|f|`` span the frequencies ``f`` and ``-f``.

    Returns
    -------
    (Tensor, Tensor)
        `(size, size)` float64 matrix and `(size,)` float64 ``|f|`` of each row.
    """
    positions = torch.arange(size, dtype=torch.float64)
    rows, magnitudes = [torch.full((size,), 1 / math.sqrt(size), dtype=torch.float64)], [0]
    for frequency in range(1, (size + 1) // 2):
        phase = 2 * math.pi * frequency * positions / size
        rows += [phase.cos() * math.sqrt(2 / size), phase.sin() * math.sqrt(2 / size)]
        magnitudes += [frequency, frequency]
    if size % 2 == 0:
        rows.append(torch.cos(math.pi * positions) / math.sqrt(size))
        magnitudes.append(size // 2)
    return torch.stack(rows), torch.tensor(magnitudes, dtype=torch.float64)


def _circular_gaussian(size: int, sigma_vox: float) -> Tensor:
    """Return the circulant `(size, size)` float64 matrix of a periodised, unit-sum Gaussian."""
    positions = torch.arange(size, dtype=torch.float64)
    lag = positions[:, None] - positions[None]
    wraps = torch.arange(-3, 4, dtype=torch.float64)[:, None, None] * size
    kernel = torch.exp(-((lag + wraps) ** 2) / (2 * sigma_vox**2)).sum(dim=0)
    return kernel / kernel.sum(dim=1, keepdim=True)


@functools.lru_cache(maxsize=32)
def _component_dft(
    size: int, patch_size: int, device: torch.device, dtype: torch.dtype
) -> tuple[Tensor, Tensor]:
    """Return the real DFT ``R`` `(n, n)` of a component axis (``n = size / p``) and its rows' ``|f|``."""
    with torch.inference_mode(False):  # cached: must serve autograd even when first built for inference
        matrix, magnitudes = _real_dft_matrix(size // patch_size)
        return matrix.to(device, dtype), magnitudes


def _transform_outer_axis(matrix: Tensor, field: Tensor) -> Tensor:
    """``matrix`` `(m, m)` applied along the leading axis of size ``m`` of each row of ``field`` `(N, m * L)`.

    One batched product with a long, contiguous trailing dimension ``L`` that reads the matrix in place.

    Returns
    -------
    Tensor
        `(N, m, L)`.
    """
    field = field.reshape(field.shape[0], matrix.shape[1], -1)
    return torch.bmm(matrix.expand(field.shape[0], *matrix.shape), field)


@functools.lru_cache(maxsize=32)
def _lowpass_circulant(size: int, sigma_vox: float, device: torch.device, dtype: torch.dtype) -> Tensor:
    """Return the circulant `(size, size)` of the periodised, unit-sum Gaussian (``lowpass_sigma_vox``)."""
    with torch.inference_mode(False):  # cached: must serve autograd even when first built for inference
        return _circular_gaussian(size, sigma_vox).to(device, dtype)


@functools.lru_cache(maxsize=32)
def _transfer_circulant(size: int, sigma_vox: float, device: torch.device, dtype: torch.dtype) -> Tensor:
    """Return the circulant `(size, size)` whose DFT is the Gaussian ``exp(-2π² σ² (f / size)²)``."""
    with torch.inference_mode(False):
        gain = torch.exp(-2 * math.pi**2 * sigma_vox**2 * torch.fft.fftfreq(size, dtype=torch.float64) ** 2)
        kernel = torch.fft.ifft(gain).real  # even in the lag
        lag = torch.arange(size)
        return kernel[(lag[:, None] - lag[None]) % size].to(device, dtype)


def _apply_circulants(volume: Tensor, circulants_zyx: list[Tensor]) -> Tensor:
    """Filter `(B, C, D, H, W)` circularly by one symmetric circulant per axis, ``(z, y, x)``."""
    batch, channels, depth, height, width = volume.shape
    circulant_z, circulant_y, circulant_x = circulants_zyx
    filtered = volume.reshape(-1, width) @ circulant_x  # symmetric: the product along x
    filtered = _transform_outer_axis(circulant_y, filtered.reshape(-1, height * width))
    filtered = _transform_outer_axis(circulant_z, filtered.reshape(batch * channels, -1))
    return filtered.reshape(volume.shape)


def component_power_spectra(
    volume: Tensor, patch_size: int, lowpass_sigma_vox: float = 0.0
) -> tuple[Tensor, Tensor]:
    """Power spectra of all polyphase components of a volume, by frequency orbit ``(|fz|, |fy|, |fx|)``.

    Voxel ``p * j + k`` of an axis is voxel ``j`` of the components of phase ``k``. The separable real DFT
    of every component is two batched products over a leading axis (``_transform_outer_axis``): one along
    z, then, after one copy that moves the coarse y and x indices ahead of the phases, one with
    ``kron(R_y, R_x)``; the result is coefficient-major. Each squared
    coefficient belongs to one orbit of frequencies under sign flips of the axes; the coefficients of an
    orbit sum to its share of the component's power, so ``sum W(|f|) power = sum_f W(f) |DFT(f)|² / n``
    over the component's full spectrum (``n`` voxels) for every ``W`` constant on those orbits (any
    ``W(f) = W(-f)`` invariant to rotations by π about the axes). For ``W = 1`` it is the component's sum
    of squares (Parseval).

    Parameters
    ----------
    volume : Tensor
        `(B, C, D, H, W)`, every spatial size divisible by ``patch_size``.
    patch_size : int
        Patch size ``p``.
    lowpass_sigma_vox : float
        Standard deviation (voxels, >= 0) of a circular Gaussian low-pass of the whole volume before its
        split into components (one product with the circulant per axis; 0: none). It commutes with
        circular shifts and with the 24 rotations of a cubic grid.

    Returns
    -------
    (Tensor, Tensor)
        `(B, C, F, p³)` power, ``F = DHW / p³`` coefficients in ``(z, y, x)`` raster order and components
        in component order; `(F, 3)` float64 ``(|fz|, |fy|, |fx|)`` of each coefficient.
    """
    if not lowpass_sigma_vox >= 0:
        raise ValueError(f"lowpass_sigma_vox must be >= 0, got {lowpass_sigma_vox}")
    p = patch_size
    batch, channels, depth, height, width = volume.shape
    if lowpass_sigma_vox > 0:
        sigma = float(lowpass_sigma_vox)
        volume = _apply_circulants(
            volume,
            [_lowpass_circulant(size, sigma, volume.device, volume.dtype) for size in volume.shape[2:]],
        )
    axes = [_component_dft(size, p, volume.device, volume.dtype) for size in (depth, height, width)]
    (along_z, _), (along_y, _), (along_x, _) = axes
    # z first, over the coarse z index that leads each volume; then one copy moves the coarse y and x
    # indices ahead of the phases, and one product with kron(R_y, R_x) transforms both.
    along_z_coefficients = _transform_outer_axis(along_z, volume.reshape(batch * channels, -1))
    blocks = along_z_coefficients.reshape(batch * channels * (depth // p), p, height // p, p, width // p, p)
    coarse_first = blocks.permute(0, 2, 4, 1, 3, 5).reshape(blocks.shape[0], -1)
    coefficients = _transform_outer_axis(torch.kron(along_y, along_x), coarse_first)
    # In place where no graph needs the coefficients.
    needs_graph = torch.is_grad_enabled() and coefficients.requires_grad
    power = coefficients.square() if needs_graph else coefficients.square_()
    magnitudes = torch.meshgrid(*(magnitude for _, magnitude in axes), indexing="ij")
    return power.reshape(batch, channels, -1, p**3), torch.stack(magnitudes, dim=-1).reshape(-1, 3)


@functools.lru_cache(maxsize=32)
def _kernel_dft(
    shape_zyx: tuple[int, int, int], kernel_size: int, device: torch.device, dtype: torch.dtype
) -> tuple[Tensor, Tensor]:
    """Cosine and sine of ``2π f·r / size`` for the orbit representatives of a component grid and the taps."""
    with torch.inference_mode(False):  # cached: must serve autograd even when first built for inference
        axes = [_real_dft_matrix(size)[1] for size in shape_zyx]
        frequencies = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)
        half = kernel_size // 2
        taps = torch.arange(-half, half + 1, dtype=torch.float64)
        offsets = torch.stack(torch.meshgrid(taps, taps, taps, indexing="ij"), dim=-1).reshape(-1, 3)
        phase = 2 * math.pi * (frequencies / torch.tensor(shape_zyx, dtype=torch.float64)) @ offsets.T
        return phase.cos().to(device, dtype), phase.sin().to(device, dtype)  # (F, k³) each


def centring_scores(volume: Tensor, patch_size: int, sigma_vox: float) -> Tensor:
    """Score each phase by how close it brings the low-passed energy's circular centroid to a patch middle.

    Per axis, the energy ``w`` of the volume low-passed by a Gaussian of ``sigma_vox`` (transfer function
    ``exp(-2π² σ² (f / size)²)``, summed over channels and the other axes) has the circular centroid
    ``c = size / 2π arg A`` and resultant length ``R = |A| / sum_x w(x)``, ``A = sum_x w(x) exp(2πi x /
    size)``; phase ``k`` scores ``sum_axes R cos(2π (k - c + p/2) / p)``, largest for
    ``k = round(c - p/2) mod p``. The low-pass is one circulant product per axis (the circulant of that
    transfer function), the energy's marginals are three sums, and ``A`` is one small product each.

    Parameters
    ----------
    volume : Tensor
        `(B, C, D, H, W)`, every spatial size divisible by ``patch_size``.
    patch_size : int
        Patch size ``p``.
    sigma_vox : float
        Low-pass standard deviation in voxels (> 0).

    Returns
    -------
    Tensor
        `(B, p³)` in component order, in ``[-3, 3]``.
    """
    batch, _, depth, height, width = volume.shape
    dtype = torch.promote_types(volume.dtype, torch.float32)
    sizes = (depth, height, width)
    circulants = [_transfer_circulant(size, float(sigma_vox), volume.device, dtype) for size in sizes]
    energy = _apply_circulants(volume.to(dtype), circulants).square().sum(dim=1)  # (B, D, H, W)
    plane = energy.sum(dim=3)  # (B, D, H)
    marginals = (plane.sum(dim=2), plane.sum(dim=1), energy.sum(dim=(1, 2)))  # w per axis, (B, size)
    total = marginals[0].sum(dim=1).clamp_min(torch.finfo(dtype).tiny)
    phases = torch.arange(patch_size, device=volume.device, dtype=dtype)
    per_axis = []
    for marginal, size in zip(marginals, sizes, strict=True):
        angle = 2 * math.pi * torch.arange(size, device=volume.device, dtype=dtype) / size
        real, imaginary = marginal @ torch.cos(angle), marginal @ torch.sin(angle)  # A, (B,) each
        centroid = torch.atan2(imaginary, real) * size / (2 * math.pi)  # voxels
        resultant = torch.hypot(real, imaginary) / total
        per_axis.append(
            resultant[:, None]
            * torch.cos(2 * math.pi * (phases - centroid[:, None] + patch_size / 2) / patch_size)
        )
    z, y, x = per_axis
    scores = z[:, :, None, None] + y[:, None, :, None] + x[:, None, None, :]
    return scores.reshape(batch, -1).to(volume.dtype)


class SteerableScorer(nn.Module):
    """Rotation- and shift-invariant score of a volume: the energy of an SO(3)-steerable filter bank.

    One steerable convolution (``SteerableConv3d``, scalar input -> ``irreps_hidden``) is applied circularly
    to each input channel of each polyphase component; the mean squared norm of every output irrep over the
    component's voxels is invariant to grid rotations (the norm of an irrep) and circular shifts (a mean
    over the torus); its square root (the irrep's RMS amplitude) goes through scalar layers to the phase's
    score. The energy is computed in Fourier space: by Parseval it is ``sum_f W_c(f) P(f)`` with ``P`` the
    component's power spectrum (``component_power_spectra``, all components at once) and
    ``W_c(f) = sum_m |K_cm(f)|²`` the kernel's, so the convolution is never evaluated voxel by voxel, and
    the gradient flows into the kernel through ``W`` alone (the data side needs none). Invariance is exact
    for the 24 rotations of a cubic grid and for circular shifts, up to float round-off.

    Parameters
    ----------
    in_chans : int
        Number of scalar input channels (each filtered by the same bank).
    irreps_hidden : str or o3.Irreps
        Irreps of the filter bank's output; each irrep gives one energy.
    kernel_size : int
        Odd taps per axis of the steerable kernels.
    lmax : int
        Highest spherical-harmonic degree in the kernels.
    hidden_dim : int
        Width of the hidden scalar layer.
    act_layer : type of nn.Module
        Activation of the hidden scalar layer.
    lowpass_sigma_vox : float
        Standard deviation (voxels, >= 0) of a circular Gaussian low-pass of the input before it is split
        into components (0: none). Each component is a decimation, so its own noise is white whatever its
        filter; averaging neighbouring voxels first (which belong to different components) is what makes
        the pick of a noisy view follow its clean view's. Free in cost terms for ``x`` (folded into the
        transforms), dense products along ``y`` and ``z``.
    phase_smoothing_sigma : float
        Standard deviation (in phases, >= 0) of a circular Gaussian over the ``p³`` phase torus applied to
        the scores (0: none): neighbouring phases see disjoint voxels, hence independent noise, while a
        low-passed signal's scores vary smoothly over the phases, so the smoothed argmax follows the
        signal. A circular convolution of the phase grid keeps the scores' cyclic shift equivariance, and a
        per-axis product of one even kernel their octahedral symmetry; phase ``k``'s score then depends on
        its neighbours too.
    centring_weight : float
        Weight (>= 0; 0: none) of a parameter-free centring term added to the learned scores: per axis,
        the circular centroid ``c`` (on the box, period ``D``) of the energy of the input low-passed by
        ``centring_sigma_vox``, scored ``R cos(2π (k - c + p/2) / p)`` for phase ``k`` (``R`` in [0, 1] the
        centroid's resultant length). Its argmax rolls the energy's centroid to the middle of a patch.
        Exactly shift-equivariant (``c`` moves with the shift, and ``p`` divides the box) and symmetric
        under the 24 grid rotations; the centroid is a box-scale statistic, robust to noise where the
        decimated components are not (docs/benchmarks.md, "Pre-training").
    centring_sigma_vox : float
        Standard deviation (voxels, > 0) of the centring term's low-pass.
    """

    irrep_index: Tensor

    def __init__(
        self,
        in_chans: int = 1,
        irreps_hidden: str | o3.Irreps = "4x0e + 4x1o + 4x2e",
        kernel_size: int = 3,
        lmax: int = 2,
        hidden_dim: int = 16,
        act_layer: type[nn.Module] = nn.SiLU,
        lowpass_sigma_vox: float = 0.0,
        phase_smoothing_sigma: float = 0.0,
        centring_weight: float = 0.0,
        centring_sigma_vox: float = 1.0,
    ) -> None:
        super().__init__()
        if in_chans < 1 or hidden_dim < 1:
            raise ValueError(f"need in_chans >= 1 and hidden_dim >= 1, got {in_chans} and {hidden_dim}")
        if not lowpass_sigma_vox >= 0 or not phase_smoothing_sigma >= 0:
            raise ValueError(
                "lowpass_sigma_vox and phase_smoothing_sigma must be >= 0, "
                f"got {lowpass_sigma_vox} and {phase_smoothing_sigma}"
            )
        if not centring_weight >= 0 or not centring_sigma_vox > 0:
            raise ValueError(
                "need centring_weight >= 0 and centring_sigma_vox > 0, "
                f"got {centring_weight} and {centring_sigma_vox}"
            )
        self.in_chans = in_chans
        self.lowpass_sigma_vox = float(lowpass_sigma_vox)
        self.phase_smoothing_sigma = float(phase_smoothing_sigma)
        self.centring_weight = float(centring_weight)
        self.centring_sigma_vox = float(centring_sigma_vox)
        self.conv = SteerableConv3d("1x0e", irreps_hidden, kernel_size, lmax)
        irreps = self.conv.irreps_out
        dims = torch.tensor([ir.dim for mul, ir in irreps for _ in range(mul)])
        self.register_buffer(
            "irrep_index", torch.repeat_interleave(torch.arange(len(dims)), dims), persistent=False
        )
        self.num_energies = irreps.num_irreps
        # No bias in the last layer: a constant added to every phase score changes nothing.
        self.mlp = nn.Sequential(
            nn.Linear(in_chans * irreps.num_irreps, hidden_dim),
            act_layer(),
            nn.Linear(hidden_dim, 1, bias=False),
        )

    def spectral_weights(self, component_shape_zyx: tuple[int, int, int]) -> Tensor:
        """Return ``W_c(f) = sum_m |K_cm(f)|²``, each irrep's kernel power, at the orbits of a component grid.

        Parameters
        ----------
        component_shape_zyx : tuple of int
            The component grid ``(d, h, w)``.

        Returns
        -------
        Tensor
            `(num_energies, F)` at the orbit ``(|fz|, |fy|, |fx|)`` of each coefficient of
            ``component_power_spectra``.
        """
        kernel = self.conv.kernel()[:, 0].flatten(1)  # (irreps dim, k³), lattice offsets r in (z, y, x)
        cosine, sine = _kernel_dft(component_shape_zyx, self.conv.kernel_size, kernel.device, kernel.dtype)
        power = (kernel @ cosine.T).square() + (kernel @ sine.T).square()  # (irreps dim, F)
        return power.new_zeros(self.num_energies, power.shape[1]).index_add_(0, self.irrep_index, power)

    def forward(self, volume: Tensor, patch_size: int) -> Tensor:
        """Score every phase of each volume.

        Parameters
        ----------
        volume : Tensor
            `(B, in_chans, D, H, W)`, every spatial size divisible by ``patch_size``; with ``patch_size=1``
            the one component is the volume itself.
        patch_size : int
            Patch size ``p``.

        Returns
        -------
        Tensor
            `(B, p³)` score of each polyphase component, in component order.
        """
        if volume.ndim != 5 or volume.shape[1] != self.in_chans:
            raise ValueError(
                f"expected volumes of shape (B, {self.in_chans}, D, H, W), got {tuple(volume.shape)}"
            )
        if patch_size < 1 or any(size % patch_size for size in volume.shape[2:]):
            raise ValueError(f"spatial sizes {tuple(volume.shape[2:])} must be divisible by {patch_size}")
        depth, height, width = (size // patch_size for size in volume.shape[2:])
        component_shape = (depth, height, width)
        power, _ = component_power_spectra(volume, patch_size, self.lowpass_sigma_vox)  # (B, C, F, p³)
        weights = self.spectral_weights(component_shape) / math.prod(component_shape)  # (energies, F)
        batch, channels, _, num_phases = power.shape
        # Mean squared irrep norm over each component, (B C, energies, p³): the weights on the left, so that
        # the product's long dimension is the phases and both operands are read in place.
        energies = torch.bmm(weights.expand(batch * channels, *weights.shape), power.flatten(0, 1))
        # The floor keeps the gradient finite on an all-zero input.
        amplitudes = (energies + torch.finfo(energies.dtype).tiny).sqrt()
        features = amplitudes.reshape(batch, -1, num_phases).transpose(1, 2)  # (B, p³, C energies)
        scores = self.mlp(features).squeeze(-1)
        if self.phase_smoothing_sigma > 0 and patch_size > 1:
            smoothing = _circular_gaussian(patch_size, self.phase_smoothing_sigma).to(scores)
            grid = scores.reshape(batch, patch_size, patch_size, patch_size)
            grid = torch.einsum("ai,bj,ck,nijk->nabc", smoothing, smoothing, smoothing, grid)
            scores = grid.reshape(batch, num_phases)
        if self.centring_weight > 0:
            scores = scores + self.centring_weight * centring_scores(
                volume, patch_size, self.centring_sigma_vox
            )
        return scores
