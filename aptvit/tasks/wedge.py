"""The missing wedge of a single-axis tilt series (tilt axis y), as a Fourier-space weight in any orientation.

Alignment and averaging ask it which Fourier components of a subtomogram, rotated or not, were measured.

Geometry (that of ``cryoengine.physics.projector``): a tilt ``θ`` projects along ``z`` after rotating the
specimen by ``θ`` about ``y``, so by the projection-slice theorem it measures the central plane spanned by
``k_y`` and the direction ``(k_z, k_x) = (sin θ, cos θ)``. A frequency ``k = (k_z, k_y, k_x)`` is measured
when ``atan(k_z / k_x)`` lies inside ``[min_angle_deg, max_angle_deg]``; the ``k_y`` axis (and the origin) lie
in every plane. The weight of a volume resampled as ``R · volume`` (:func:`aptvit.rotation.rotate_volumes`)
is ``W(Rᵀ k)``: the wedge turns with the particle.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

__all__ = ["MissingWedge", "fourier_frequencies_zyx"]


def fourier_frequencies_zyx(
    shape_zyx: tuple[int, int, int],
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """Spatial frequencies of the ``torch.fft.fftn`` grid of a volume, in cycles per voxel.

    Parameters
    ----------
    shape_zyx
        `(D, H, W)` shape of the volume.

    Returns
    -------
    Tensor
        `(D, H, W, 3)` frequencies ``(k_z, k_y, k_x)`` in the unshifted FFT layout, each in ``[-0.5, 0.5)``.
    """
    if len(shape_zyx) != 3 or min(shape_zyx) < 1:
        raise ValueError(f"shape_zyx must be three positive sizes, got {shape_zyx}")
    axes = [torch.fft.fftfreq(n, dtype=dtype, device=device) for n in shape_zyx]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)


@dataclass(frozen=True)
class MissingWedge:
    """Tilt range of a single-axis (tilt axis y) acquisition; its complement in Fourier space is the wedge.

    Parameters
    ----------
    min_angle_deg, max_angle_deg
        First and last tilt angle (°), inside (−90°, 90°).
    """

    min_angle_deg: float = -60.0
    max_angle_deg: float = 60.0

    def __post_init__(self) -> None:
        if not -90.0 < self.min_angle_deg <= self.max_angle_deg < 90.0:
            raise ValueError(
                "tilt range must satisfy -90 < min <= max < 90, got "
                f"[{self.min_angle_deg}, {self.max_angle_deg}]"
            )

    @classmethod
    def from_dataset_attrs(cls, attrs: Mapping[str, Any]) -> MissingWedge:
        """Read the tilt range from a dataset's root attributes (``attrs["tilt_scheme"]``)."""
        scheme = attrs.get("tilt_scheme")
        if not isinstance(scheme, Mapping) or "min_angle_deg" not in scheme or "max_angle_deg" not in scheme:
            raise ValueError(f"dataset attrs have no tilt_scheme with min/max_angle_deg, got {scheme!r}")
        return cls(float(scheme["min_angle_deg"]), float(scheme["max_angle_deg"]))

    def weight(
        self,
        shape_zyx: tuple[int, int, int],
        rotation: Tensor | None = None,
        *,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """Measured-region weight (1 measured, 0 missing) on the ``fftn`` grid of a volume, maybe rotated.

        Parameters
        ----------
        shape_zyx
            `(D, H, W)` shape of the volume.
        rotation
            `(B, 3, 3)`: the weight of the volume after resampling as ``R · volume``, ``W(Rᵀ k)``; None:
            the lab-frame weight.

        Returns
        -------
        Tensor
            `(D, H, W)` without ``rotation``, else `(B, D, H, W)`; unshifted FFT layout.
        """
        frequencies = fourier_frequencies_zyx(shape_zyx, dtype=dtype, device=device)
        if rotation is not None:
            if rotation.ndim != 3 or rotation.shape[1:] != (3, 3):
                raise ValueError(f"rotation must have shape (B, 3, 3), got {tuple(rotation.shape)}")
            # Row vectors: (Rᵀ k)ᵀ = kᵀ R.
            rotation = rotation.to(device=device, dtype=dtype)
            frequencies = torch.einsum("dhwi,bij->bdhwj", frequencies, rotation)
        return self._measured(frequencies).to(dtype)

    def _measured(self, frequencies_zyx: Tensor) -> Tensor:
        k_z, k_y, k_x = frequencies_zyx.unbind(dim=-1)
        # Angle of (k_z, k_x) folded into (-90°, 90°]: the plane at θ holds ±(sin θ, cos θ).
        sign = torch.where(k_x < 0, -1.0, 1.0).to(k_x)
        angle_deg = torch.rad2deg(torch.atan2(k_z * sign, k_x * sign))
        tolerance = 1e-4
        inside = (angle_deg >= self.min_angle_deg - tolerance) & (angle_deg <= self.max_angle_deg + tolerance)
        on_tilt_axis = k_z.square() + k_x.square() <= (1e-6 * (1.0 + k_y.abs())) ** 2
        return inside | on_tilt_axis

    @property
    def missing_fraction(self) -> float:
        """Fraction of the (k_z, k_x) half-plane of directions that was not measured."""
        return 1.0 - (self.max_angle_deg - self.min_angle_deg) / 180.0
