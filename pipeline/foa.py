"""First-order ambisonics (FOA): encoding, format conversion, rotation and beamforming.

Signals are shaped ``(4, n_samples)`` (or ``(..., 4, n_samples)`` where stated) in ambiX:
ACN channel order ``W, Y, Z, X`` with SN3D normalisation, float32. A plane wave ``s(t)`` from
direction ``d = (x, y, z)`` encodes as ``W = s, Y = s y, Z = s z, X = s x``. Angles are radians
in the frame of ``docs/CONVENTIONS.md`` (+x front, +y left, +z up; azimuth counter-clockwise
from the front, elevation up from the horizon).

Rotation toward a viewpoint ``(az_k, el_k)`` acts on the dipoles ``v = (X, Y, Z)`` as
``v' = R_y(el_k) R_z(-az_k) v`` (yaw first, then pitch), so a source at the viewpoint ends up at
the front; ``W`` is unchanged. The kernels are numba-compiled, release the GIL and are
single-threaded by default: the safe choice inside Dask or DataLoader workers, because numba's
``workqueue`` threading layer aborts on concurrent parallel calls from several threads and GNU
OpenMP is not fork-safe. ``parallel=True`` selects a ``prange`` kernel for large batches in a
plain process.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import soundfile as sf
from numba import njit, prange

from pipeline.errors import AmbisonicFormatError  # re-exported: PipelineError and ValueError
from pipeline.spatial import direction_vector

__all__ = [
    "AmbisonicFormatError",
    "ACN_W",
    "ACN_Y",
    "ACN_Z",
    "ACN_X",
    "BEAM_PATTERNS",
    "encode_plane_wave",
    "fuma_to_ambix",
    "ambix_to_fuma",
    "n3d_to_sn3d",
    "sn3d_to_n3d",
    "hoa_to_foa",
    "load_ambisonic_wav",
    "dipole_rotation_matrix",
    "rotation_matrix_to_front",
    "beam_weights",
    "rotate_to_viewpoints",
    "beamform",
    "rotate_and_beamform",
    "mirror_left_right",
]

ACN_W, ACN_Y, ACN_Z, ACN_X = 0, 1, 2, 3
# ACN channel holding each Cartesian dipole component, in (x, y, z) order.
_ACN_OF_XYZ = (ACN_X, ACN_Y, ACN_Z)

# Beam pattern a0 + a1 cos(theta) for SN3D first-order signals: (a0, a1), a0 + a1 = 1 on axis.
BEAM_PATTERNS: dict[str, tuple[float, float]] = {
    "cardioid": (0.5, 0.5),
    "hypercardioid": (0.25, 0.75),
    "max_re": ((math.sqrt(3.0) - 1.0) / 2.0, (3.0 - math.sqrt(3.0)) / 2.0),
}

# Below this many output samples per channel (K * n) the parallel kernel does not pay off.
PARALLEL_MIN_SAMPLES = 1 << 20
# Samples per kernel block: 4 input channels x 1024 float32 = 16 KiB, resident in L1.
_BLOCK = 1024

AMBISONIC_CONVENTIONS = ("ambix", "fuma", "acn_n3d")


# --------------------------------------------------------------------------- validation


def _ambisonic_order(n_channels: int) -> int | None:
    """Order N when ``n_channels == (N + 1)^2`` with N >= 1, else None."""
    order = math.isqrt(n_channels) - 1
    return order if order >= 1 and (order + 1) ** 2 == n_channels else None


def _require_foa(x, name: str = "signal") -> np.ndarray:
    x = np.asarray(x)
    if x.ndim < 2 or x.shape[-2] != 4:
        raise AmbisonicFormatError(
            f"{name}: expected FOA shaped (..., 4, n_samples), got shape {x.shape}"
        )
    return x


def _require_hoa(x, name: str = "signal") -> tuple[np.ndarray, int]:
    x = np.asarray(x)
    if x.ndim < 2:
        raise AmbisonicFormatError(
            f"{name}: expected (..., (N+1)^2, n_samples) ACN channels, got shape {x.shape}"
        )
    order = _ambisonic_order(x.shape[-2])
    if order is None:
        raise AmbisonicFormatError(
            f"{name}: expected (N+1)^2 = 4, 9, 16, 25, ... ACN channels on axis -2, "
            f"got {x.shape[-2]} (shape {x.shape})"
        )
    return x, order


def _require_angles(azimuth_rad, elevation_rad) -> tuple[np.ndarray, np.ndarray]:
    azimuth_rad = np.atleast_1d(np.asarray(azimuth_rad, dtype=np.float64))
    elevation_rad = np.atleast_1d(np.asarray(elevation_rad, dtype=np.float64))
    if azimuth_rad.ndim != 1 or azimuth_rad.shape != elevation_rad.shape:
        raise ValueError(
            "expected azimuth_rad and elevation_rad shaped (K,), got "
            f"{azimuth_rad.shape} and {elevation_rad.shape}"
        )
    return azimuth_rad, elevation_rad


# --------------------------------------------------------------------------- encoding, formats


def encode_plane_wave(signal, azimuth_rad, elevation_rad) -> np.ndarray:
    """Encode a mono plane wave into ambiX FOA.

    Args:
        signal: ``(n,)`` pressure signal.
        azimuth_rad, elevation_rad: direction of arrival in radians; scalars for a fixed source
            or ``(n,)`` arrays for a moving source (one direction per sample).
    Returns:
        float32 ``(4, n)`` in ACN/SN3D: ``[s, s y, s z, s x]`` with ``(x, y, z) = d(az, el)``.
    """
    signal = np.asarray(signal, dtype=np.float64)
    if signal.ndim != 1:
        raise ValueError(f"expected a mono signal shaped (n,), got {signal.shape}")
    direction = direction_vector(azimuth_rad, elevation_rad)  # (3,) or (n, 3)
    if direction.ndim == 2 and direction.shape[0] != signal.shape[0]:
        raise ValueError(
            f"per-sample angles must have {signal.shape[0]} entries, got {direction.shape[0]}"
        )
    gains_xyz = direction.T if direction.ndim == 2 else direction[:, None]  # (3, n) or (3, 1)
    foa = np.empty((4, signal.shape[0]), dtype=np.float32)
    foa[ACN_W] = signal
    for axis, acn in enumerate(_ACN_OF_XYZ):
        foa[acn] = signal * gains_xyz[axis]
    return foa


def fuma_to_ambix(x_wxyz) -> np.ndarray:
    """First-order FuMa ``(..., 4, n)`` [W, X, Y, Z], W at -3 dB -> ambiX [W, Y, Z, X] SN3D.

    ``W_ambix = sqrt(2) W_fuma``; the first-order FuMa dipoles equal the SN3D ones.
    """
    x_wxyz = _require_foa(x_wxyz, "FuMa signal")
    w, x, y, z = (x_wxyz[..., i, :] for i in range(4))
    return np.stack([math.sqrt(2.0) * w, y, z, x], axis=-2).astype(x_wxyz.dtype, copy=False)


def ambix_to_fuma(foa) -> np.ndarray:
    """ambiX ``(..., 4, n)`` [W, Y, Z, X] SN3D -> first-order FuMa [W / sqrt(2), X, Y, Z]."""
    foa = _require_foa(foa, "ambiX signal")
    w, y, z, x = (foa[..., i, :] for i in range(4))
    return np.stack([w / math.sqrt(2.0), x, y, z], axis=-2).astype(foa.dtype, copy=False)


def _n3d_over_sn3d(n_channels: int) -> np.ndarray:
    """Per-ACN-channel factor sqrt(2 l + 1) with l the order of each channel."""
    order_of_channel = np.floor(np.sqrt(np.arange(n_channels))).astype(np.int64)
    return np.sqrt(2.0 * order_of_channel + 1.0)


def n3d_to_sn3d(x_acn) -> np.ndarray:
    """ACN/N3D ``(..., (N+1)^2, n)`` -> ACN/SN3D: order-l channels divided by sqrt(2l + 1).

    At first order the dipoles are divided by sqrt(3) and W is unchanged.
    """
    x_acn, _ = _require_hoa(x_acn, "N3D signal")
    scale = (1.0 / _n3d_over_sn3d(x_acn.shape[-2]))[:, None]
    return (x_acn * scale).astype(x_acn.dtype, copy=False)


def sn3d_to_n3d(x_acn) -> np.ndarray:
    """ACN/SN3D ``(..., (N+1)^2, n)`` -> ACN/N3D: order-l channels times sqrt(2l + 1)."""
    x_acn, _ = _require_hoa(x_acn, "SN3D signal")
    scale = _n3d_over_sn3d(x_acn.shape[-2])[:, None]
    return (x_acn * scale).astype(x_acn.dtype, copy=False)


def hoa_to_foa(x_acn) -> np.ndarray:
    """First-order part (ACN channels 0..3) of an ACN signal ``(..., (N+1)^2, n)``, N >= 1.

    Valid for SN3D and N3D alike (the normalisation is kept). Returns a contiguous copy.
    """
    x_acn, _ = _require_hoa(x_acn, "ambisonic signal")
    return np.ascontiguousarray(x_acn[..., :4, :])


def load_ambisonic_wav(path, convention: str = "ambix") -> tuple[np.ndarray, int]:
    """Read an ambisonic audio file (any format soundfile reads: wav, flac, ogg) as ambiX FOA.

    Args:
        path: audio file with channels in the order of ``convention``.
        convention: ``"ambix"`` (ACN/SN3D, any order N >= 1), ``"fuma"`` (first-order
            FuMa W, X, Y, Z with W at -3 dB) or ``"acn_n3d"`` (ACN/N3D, any order N >= 1).
    Returns:
        ``(foa, sample_rate)``: float32 ``(4, n)`` ambiX ACN/SN3D, higher orders dropped.
    Raises:
        AmbisonicFormatError: the channel count does not fit the convention.
    """
    if convention not in AMBISONIC_CONVENTIONS:
        raise ValueError(f"convention must be one of {AMBISONIC_CONVENTIONS}, got {convention!r}")
    data, sample_rate = sf.read(str(path), dtype="float32", always_2d=True)
    signal = np.ascontiguousarray(data.T)  # (channels, n)
    name = f"{Path(path).name} ({convention})"
    if convention == "fuma":
        return np.ascontiguousarray(fuma_to_ambix(_require_foa(signal, name))), sample_rate
    _require_hoa(signal, name)
    foa = hoa_to_foa(signal)
    if convention == "acn_n3d":
        foa = n3d_to_sn3d(foa)
    return foa.astype(np.float32, copy=False), sample_rate


# --------------------------------------------------------------------------- rotation, beams


def dipole_rotation_matrix(azimuth_rad, elevation_rad) -> np.ndarray:
    """``R_y(el) R_z(-az)`` acting on (x, y, z) vectors; float64 ``(..., 3, 3)``.

    Maps the direction ``d(az, el)`` to the front ``(1, 0, 0)``: yaw by ``-az`` first, then pitch
    by ``el`` (active right-handed rotations, docs/CONVENTIONS.md). Its first row is ``d(az, el)``.
    """
    azimuth_rad = np.asarray(azimuth_rad, dtype=np.float64)
    elevation_rad = np.asarray(elevation_rad, dtype=np.float64)
    ca, sa = np.cos(azimuth_rad), np.sin(azimuth_rad)
    ce, se = np.cos(elevation_rad), np.sin(elevation_rad)
    # R_z(-az) = [[ca, sa, 0], [-sa, ca, 0], [0, 0, 1]]
    # R_y(el) = [[ce, 0, se], [0, 1, 0], [-se, 0, ce]]
    matrix = np.empty(np.broadcast_shapes(ca.shape, ce.shape) + (3, 3))
    matrix[..., 0, 0], matrix[..., 0, 1], matrix[..., 0, 2] = ce * ca, ce * sa, se
    matrix[..., 1, 0], matrix[..., 1, 1], matrix[..., 1, 2] = -sa, ca, 0.0
    matrix[..., 2, 0], matrix[..., 2, 1], matrix[..., 2, 2] = -se * ca, -se * sa, ce
    return matrix


def rotation_matrix_to_front(azimuth_rad, elevation_rad) -> np.ndarray:
    """Rotation toward the viewpoint ``(az, el)`` (radians) on ACN channels, ``(..., 4, 4)``.

    ``foa_rotated = M @ foa`` for ``foa`` ``(4, n)`` in [W, Y, Z, X]; W is unchanged and the
    dipoles follow :func:`dipole_rotation_matrix`. The inverse is the transpose.
    """
    rot_xyz = dipole_rotation_matrix(azimuth_rad, elevation_rad)
    matrix = np.zeros(rot_xyz.shape[:-2] + (4, 4))
    matrix[..., ACN_W, ACN_W] = 1.0
    acn = np.array(_ACN_OF_XYZ)
    matrix[..., acn[:, None], acn[None, :]] = rot_xyz
    return matrix


def beam_weights(azimuth_rad, elevation_rad, pattern: str = "cardioid") -> np.ndarray:
    """ACN weights ``(..., 4)`` of the beam ``a0 W + a1 (u . [X, Y, Z])`` with ``u = d(az, el)``.

    ``pattern`` names ``(a0, a1)`` in :data:`BEAM_PATTERNS`; angles in radians; float64.
    """
    if pattern not in BEAM_PATTERNS:
        raise ValueError(f"pattern must be one of {sorted(BEAM_PATTERNS)}, got {pattern!r}")
    a0, a1 = BEAM_PATTERNS[pattern]
    u_xyz = direction_vector(azimuth_rad, elevation_rad)
    weights = np.empty(u_xyz.shape[:-1] + (4,))
    weights[..., ACN_W] = a0
    for axis, acn in enumerate(_ACN_OF_XYZ):
        weights[..., acn] = a1 * u_xyz[..., axis]
    return weights


@njit(cache=True, nogil=True)
def _rotate_beam_block(
    foa, rot_xyz, beam_a0, beam_a1, out_rot, out_beam, start, stop, write_rot, write_beam
):
    """Rotate samples [start, stop) of ``foa`` (4, n) toward every viewpoint and/or beamform.

    One small block of input stays in L1 while all K outputs are written; each inner loop
    touches few streams so LLVM vectorises it. The beam toward viewpoint k is ``a0 W + a1 X'``
    because X' = u_k . (X, Y, Z) (the first row of the rotation is u_k).
    """
    w_in = foa[0, start:stop]
    y_in = foa[1, start:stop]
    z_in = foa[2, start:stop]
    x_in = foa[3, start:stop]
    for k in range(rot_xyz.shape[0]):
        r = rot_xyz[k]
        r00, r01, r02 = r[0, 0], r[0, 1], r[0, 2]
        r10, r11, r12 = r[1, 0], r[1, 1], r[1, 2]
        r20, r21, r22 = r[2, 0], r[2, 1], r[2, 2]
        if write_rot:
            w_rot = out_rot[k, 0, start:stop]
            y_rot = out_rot[k, 1, start:stop]
            z_rot = out_rot[k, 2, start:stop]
            x_rot = out_rot[k, 3, start:stop]
            for t in range(stop - start):  # explicit loop: slice assignment would copy twice
                w_rot[t] = w_in[t]
            for t in range(stop - start):
                x_rot[t] = r00 * x_in[t] + r01 * y_in[t] + r02 * z_in[t]
                y_rot[t] = r10 * x_in[t] + r11 * y_in[t] + r12 * z_in[t]
                z_rot[t] = r20 * x_in[t] + r21 * y_in[t] + r22 * z_in[t]
            if write_beam:
                beam = out_beam[k, start:stop]
                for t in range(stop - start):
                    beam[t] = beam_a0 * w_in[t] + beam_a1 * x_rot[t]
        elif write_beam:
            beam = out_beam[k, start:stop]
            for t in range(stop - start):
                beam[t] = beam_a0 * w_in[t] + beam_a1 * (
                    r00 * x_in[t] + r01 * y_in[t] + r02 * z_in[t]
                )


@njit(cache=True, nogil=True)
def _rotate_beam_serial(foa, rot_xyz, beam_a0, beam_a1, out_rot, out_beam, write_rot, write_beam):
    n = foa.shape[1]
    for start in range(0, n, _BLOCK):
        stop = min(start + _BLOCK, n)
        _rotate_beam_block(
            foa, rot_xyz, beam_a0, beam_a1, out_rot, out_beam, start, stop, write_rot, write_beam
        )


@njit(cache=True, nogil=True, parallel=True)
def _rotate_beam_parallel(foa, rot_xyz, beam_a0, beam_a1, out_rot, out_beam, write_rot, write_beam):
    n = foa.shape[1]
    for b in prange((n + _BLOCK - 1) // _BLOCK):
        start = b * _BLOCK
        stop = min(start + _BLOCK, n)
        _rotate_beam_block(
            foa, rot_xyz, beam_a0, beam_a1, out_rot, out_beam, start, stop, write_rot, write_beam
        )


def _run_kernel(foa, azimuth_rad, elevation_rad, pattern, write_rot, write_beam, parallel):
    foa = _require_foa(foa, "FOA signal")
    if foa.ndim != 2:
        raise AmbisonicFormatError(f"FOA signal: expected shape (4, n_samples), got {foa.shape}")
    foa = np.ascontiguousarray(foa, dtype=np.float32)
    azimuth_rad, elevation_rad = _require_angles(azimuth_rad, elevation_rad)
    if pattern not in BEAM_PATTERNS:
        raise ValueError(f"pattern must be one of {sorted(BEAM_PATTERNS)}, got {pattern!r}")
    a0, a1 = BEAM_PATTERNS[pattern]
    num_viewpoints, n_samples = azimuth_rad.shape[0], foa.shape[1]
    rot_xyz = dipole_rotation_matrix(azimuth_rad, elevation_rad).astype(np.float32)
    out_rot = np.empty((num_viewpoints, 4, n_samples) if write_rot else (0, 4, 0), dtype=np.float32)
    out_beam = np.empty((num_viewpoints, n_samples) if write_beam else (0, 0), dtype=np.float32)
    use_parallel = parallel and num_viewpoints * n_samples >= PARALLEL_MIN_SAMPLES
    kernel = _rotate_beam_parallel if use_parallel else _rotate_beam_serial
    kernel(foa, rot_xyz, np.float32(a0), np.float32(a1), out_rot, out_beam, write_rot, write_beam)
    return out_rot, out_beam


def rotate_to_viewpoints(foa, azimuth_rad, elevation_rad, *, parallel: bool = False) -> np.ndarray:
    """Rotate the sound field so that each viewpoint ``(az_k, el_k)`` is at the front.

    Args:
        foa: ``(4, n)`` ambiX (ACN/SN3D), converted to float32.
        azimuth_rad, elevation_rad: ``(K,)`` viewpoint directions in radians.
        parallel: use the multi-threaded numba kernel when ``K * n`` is large (>= 2**20).
            Keep False inside Dask/DataLoader workers (see the module docstring).
    Returns:
        float32 ``(K, 4, n)``; equal to ``rotation_matrix_to_front(az_k, el_k) @ foa``.
    """
    rotated, _ = _run_kernel(foa, azimuth_rad, elevation_rad, "cardioid", True, False, parallel)
    return rotated


def beamform(
    foa, azimuth_rad, elevation_rad, pattern: str = "cardioid", *, parallel: bool = False
) -> np.ndarray:
    """First-order beams ``a0 W + a1 (u_k . [X, Y, Z])`` toward each ``(az_k, el_k)`` (radians).

    Args:
        foa: ``(4, n)`` ambiX (ACN/SN3D) of the unrotated field.
        pattern: ``"cardioid"`` (0.5, 0.5), ``"hypercardioid"`` (0.25, 0.75) or ``"max_re"``
            ((sqrt3 - 1)/2, (3 - sqrt3)/2); gain ``a0 + a1 cos(theta)``, 1 on axis.
    Returns:
        float32 ``(K, n)``.
    """
    _, beams = _run_kernel(foa, azimuth_rad, elevation_rad, pattern, False, True, parallel)
    return beams


def rotate_and_beamform(
    foa, azimuth_rad, elevation_rad, pattern: str = "cardioid", *, parallel: bool = False
):
    """Fused :func:`rotate_to_viewpoints` and :func:`beamform` in one pass over ``foa``.

    Returns:
        ``(rotated (K, 4, n), beams (K, n))`` float32; beams point at the viewpoints of the
        unrotated field (equivalently, at the front of each rotated field).
    """
    return _run_kernel(foa, azimuth_rad, elevation_rad, pattern, True, True, parallel)


def mirror_left_right(foa) -> np.ndarray:
    """Mirror the field left/right (``Y -> -Y``) to match a horizontally flipped crop.

    Accepts ``(..., 4, n)`` ambiX; returns a new array of the same dtype.
    """
    foa = _require_foa(foa, "FOA signal")
    mirrored = np.array(foa, copy=True)
    mirrored[..., ACN_Y, :] *= -1
    return mirrored
