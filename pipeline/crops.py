"""Gnomonic (perspective) crops of equirectangular frames, one sampling grid per viewpoint.

Geometry: py360convert's ``e2p`` (its ``xyzpers`` / ``xyz2uv`` / ``uv2coor``), re-expressed in
the frame of docs/CONVENTIONS.md and checked against ``py360convert.e2p`` in the tests. For a
viewpoint looking at ``d = d(az, el)`` with right vector ``r = d(az - pi/2, 0)`` and up vector
``u = r x d``, crop pixel (row i, column j) of an S x S crop looks along

    ray_ij = d + tan(fov / 2) * (s_j r + s'_i u),   s = linspace(-1, 1, S),  s' = -s (row 0 at the top)

so ``fov_rad`` is the true horizontal angle between the centres of the leftmost and rightmost
crop pixels (py360convert's ``fov_deg``); the crop is square, so the vertical FOV is the same.
Equivalently ``e2p(frame, fov_deg, u_deg=-az_deg, v_deg=el_deg, out_hw=(S, S))``.

Speed: e2p rebuilds (or looks up) the grid and pads the whole frame for every call and every
colour channel. Here the grid of a viewpoint is built once (vectorised over all K viewpoints),
converted to OpenCV's fixed-point maps once, and applied to all T frames of the window with
``cv2.remap`` (one call per frame, ~40 us for a 112 x 112 RGB crop). Horizontal wrap across
the seam is ``BORDER_WRAP``; rows are clamped to the first / last row (py360convert instead pads
a row rolled by W/2 across the pole: the two differ only within half a pixel of the poles).
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from pipeline.spatial import view_basis

try:  # OpenCV comes with ultralytics; it is the fast path and required by the pipeline.
    import cv2
except ImportError as exc:  # pragma: no cover
    raise ImportError("pipeline.crops needs OpenCV (cv2), installed with ultralytics") from exc

__all__ = [
    "perspective_rays",
    "perspective_grid",
    "CropSampler",
    "crop_frames",
    "resize_keyframe",
    "rgb_to_bgra",
]


def _scaled_basis(azimuth_rad, elevation_rad, fov_rad, crop_size: int, dtype
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each viewpoint's ``d``, ``tan(fov / 2) r`` and ``tan(fov / 2) u`` (module docstring),
    ``(K, 3)`` each, and the crop's steps ``s = linspace(-1, 1, S)``, all of ``dtype`` (the
    basis itself is computed in float64)."""
    az, el, fov = np.broadcast_arrays(*(np.atleast_1d(np.asarray(v, dtype=np.float64))
                                        for v in (azimuth_rad, elevation_rad, fov_rad)))
    forward, right, up = view_basis(az, el)
    half = np.tan(fov / 2.0)[:, None]
    return (forward.astype(dtype), (right * half).astype(dtype), (up * half).astype(dtype),
            np.linspace(-1.0, 1.0, crop_size).astype(dtype))


def _ray_component(forward, right, up, steps: np.ndarray) -> np.ndarray:
    """One component of ``ray_ij = d + s_j tan(fov/2) r + s'_i tan(fov/2) u`` from that
    component of the scaled basis (``(...)``-shaped) -> ``(..., S, S)``: columns go right,
    rows go down (``s' = -s``)."""
    forward, right, up = (np.asarray(v)[..., None, None] for v in (forward, right, up))
    return (forward + steps[None, :] * right) - steps[:, None] * up


def perspective_rays(azimuth_rad, elevation_rad, fov_rad, crop_size: int) -> np.ndarray:
    """Ray directions of every crop pixel, ``(K, S, S, 3)`` float64 (not normalised).

    Args:
        azimuth_rad, elevation_rad, fov_rad: ``(K,)`` (or scalars) viewpoint centre and true
            horizontal field of view, radians.
        crop_size: S, pixels (square crop).
    """
    forward, right, up, steps = _scaled_basis(azimuth_rad, elevation_rad, fov_rad, crop_size,
                                              np.float64)
    return np.stack([_ray_component(forward[:, i], right[:, i], up[:, i], steps)
                     for i in range(3)], axis=-1)


def perspective_grid(azimuth_rad, elevation_rad, fov_rad, crop_size: int, width: int,
                     height: int) -> tuple[np.ndarray, np.ndarray]:
    """Equirectangular sampling positions ``(col, row)`` of every crop pixel, ``(K, S, S)`` each.

    Pixel coordinates use pixel centres at integers (docs/CONVENTIONS.md, the formulas of
    ``pipeline.spatial.direction_to_equirect_pixel``); ``col`` is wrapped into ``[0, width]``
    (``width`` only by rounding: the same column as 0 for the wrapping remap) and ``row``
    clamped into ``[0, height - 1]``. float32, and computed in float32: the error against the
    float64 formulas, in pixels of arc (column error x cos(elevation); columns
    crowd near the poles), stays under 1e-3 px for frames up to 8K wide (tested), far below the
    1/32 px of the fixed-point maps that sample with it; float32 ``arctan2`` is SIMD and about
    3x faster than float64. One view at a time: its ~50 kB temporaries stay in cache.
    """
    f32 = np.float32
    forward, right, up, steps = _scaled_basis(azimuth_rad, elevation_rad, fov_rad, crop_size, f32)
    cols = np.empty((len(forward), crop_size, crop_size), dtype=f32)
    rows = np.empty_like(cols)
    col_scale, row_scale = f32(-0.5 * width / np.pi), f32(-height / np.pi)
    col_offset, row_offset = f32(0.5 * width - 0.5), f32(0.5 * height - 0.5)
    for k in range(len(forward)):
        x, y, z = (_ray_component(forward[k, i], right[k, i], up[k, i], steps) for i in range(3))
        # az = atan2(y, x), el = atan2(z, |(x, y)|) (sqrt: float32 hypot is 5x slower), then
        # col = W/2 (1 - az/pi) - 1/2 and row = H (1/2 - el/pi) - 1/2, in place.
        col = cols[k]
        np.arctan2(y, x, out=col)
        np.multiply(col, col_scale, out=col)
        col += col_offset                      # in [-1/2, W - 1/2]: wrap the left half-pixel
        np.add(col, f32(width), out=col, where=col < 0)   # (float32 np.mod is 10x slower)
        row = rows[k]
        np.arctan2(z, np.sqrt(x * x + y * y), out=row)
        np.multiply(row, row_scale, out=row)
        row += row_offset
        np.clip(row, f32(0.0), f32(height - 1.0), out=row)
    return cols, rows


class CropSampler:
    """Sampling maps for K viewpoints on frames of one size: built once, applied to many frames.

    Args:
        azimuth_rad, elevation_rad, fov_rad: ``(K,)`` radians (see the module docstring).
        crop_size: S pixels; width, height: equirectangular frame size (pixels, W = 2H).
        interpolation: ``cv2.INTER_LINEAR`` (default, as e2p ``mode="bilinear"``).
    """

    def __init__(self, azimuth_rad, elevation_rad, fov_rad, crop_size: int, width: int,
                 height: int, interpolation: int = cv2.INTER_LINEAR):
        cols, rows = perspective_grid(azimuth_rad, elevation_rad, fov_rad, crop_size, width,
                                      height)
        self.crop_size = crop_size
        self.width, self.height = width, height
        self.interpolation = interpolation
        # Fixed-point maps (1/32 pixel), as py360convert uses: faster remap, same result.
        self._maps = [cv2.convertMaps(c, r, cv2.CV_16SC2,
                                      nninterpolation=interpolation == cv2.INTER_NEAREST)
                      for c, r in zip(cols, rows)]

    def __len__(self) -> int:
        return len(self._maps)

    def _check_frames(self, frames) -> np.ndarray:
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[1:3] != (self.height, self.width):
            raise ValueError(f"expected frames shaped (T, {self.height}, {self.width}, C), got "
                             f"{frames.shape}")
        return frames

    def _crop_view(self, frames: np.ndarray, k: int, out: np.ndarray) -> None:
        map1, map2 = self._maps[k]
        for t in range(len(frames)):
            # One remap per frame: stacking the T frames as 3T channels was measured slower.
            cv2.remap(frames[t], map1, map2, self.interpolation, dst=out[t],
                      borderMode=cv2.BORDER_WRAP)

    def crop(self, frames: np.ndarray) -> np.ndarray:
        """Crops of ``(T, H, W, C)`` frames at the K viewpoints -> ``(K, T, S, S, C)``, same dtype."""
        frames = self._check_frames(frames)
        out = np.empty((len(self._maps), frames.shape[0], self.crop_size, self.crop_size,
                        frames.shape[3]), dtype=frames.dtype)
        for k in range(len(self._maps)):
            self._crop_view(frames, k, out[k])
        return out

    def iter_crops(self, frames: np.ndarray, views=None) -> Iterator[np.ndarray]:
        """Crops ``(T, S, S, C)`` of the viewpoints ``views`` (default: all), one at a time, in
        one buffer that the next one overwrites (copy what you keep): a window's 32 views then
        cost 0.3 MB of memory instead of 9.6 MB, and no fresh pages per window."""
        frames = self._check_frames(frames)
        out = np.empty((frames.shape[0], self.crop_size, self.crop_size, frames.shape[3]),
                       dtype=frames.dtype)
        for k in range(len(self._maps)) if views is None else views:
            self._crop_view(frames, k, out)
            yield out


def crop_frames(frames: np.ndarray, azimuth_rad, elevation_rad, fov_rad,
                crop_size: int) -> np.ndarray:
    """Gnomonic crops of ``(T, H, W, 3)`` uint8 frames at K viewpoints -> ``(K, T, S, S, 3)``.

    Builds one :class:`CropSampler` (angles in radians) and applies it to every frame.
    """
    frames = np.asarray(frames)
    sampler = CropSampler(azimuth_rad, elevation_rad, fov_rad, crop_size, frames.shape[2],
                          frames.shape[1])
    return sampler.crop(frames)


def rgb_to_bgra(frames_rgb: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``(T, H, W, 3)`` uint8 RGB frames -> ``(T, H, W, 4)`` BGRA (alpha 255), the layout in which
    preprocessing crops a window for JPEG (``encode_jpeg_strips(..., layout="bgra")``): OpenCV
    remaps 4 channels faster than 3 (12.4 against 13.4 ms per window of 32 viewpoints, the same
    values in each channel, test) and its JPEG encoder takes BGRA as it is, where RGB crops
    needed a BGR copy each. ``out``: a C-contiguous uint8 array of that shape to write into;
    reused across a clip's windows, the conversion costs 0.8 ms per window of 8 frames of 512 x
    256 inside a preprocessing task, against 2.8 ms in fresh memory each time (first touch)."""
    frames_rgb = np.asarray(frames_rgb)
    if frames_rgb.dtype != np.uint8 or frames_rgb.ndim != 4 or frames_rgb.shape[-1] != 3:
        raise ValueError(f"expected uint8 RGB frames shaped (T, H, W, 3), got {frames_rgb.dtype} "
                         f"{frames_rgb.shape}")
    shape = (*frames_rgb.shape[:3], 4)
    if out is None:
        out = np.empty(shape, dtype=np.uint8)
    elif out.shape != shape or out.dtype != np.uint8 or not out.flags.c_contiguous:
        raise ValueError(f"out: expected a C-contiguous uint8 array shaped {shape}, got "
                         f"{out.dtype} {out.shape}")
    for frame, converted in zip(frames_rgb, out):
        cv2.cvtColor(frame, cv2.COLOR_RGB2BGRA, dst=converted)
    return out


def resize_keyframe(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    """Downscale an equirectangular RGB frame to ``width x height`` (area averaging)."""
    if frame.shape[1] == width and frame.shape[0] == height:
        return np.ascontiguousarray(frame)
    return cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)
