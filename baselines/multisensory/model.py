"""The early-fusion audio-visual network of Owens & Efros (2018), sized for 0.5 s crops.

Shapes: N examples, T video frames, S crop size, C waveform channels (1 mono W, 4 FOA),
L waveform samples (the 0.5 s aligned with the video).

- Video stream: a 3D conv (5x7x7, stride 2 in time and space) and a 1x3x3 max pool, then
  one 3D residual block: (N, 3, T, S, S) -> (N, Cv, T/2, S/8, S/8). The temporal stride 2
  brings 16 fps to 8 Hz (the original: 29.97 fps / 4 = 7.5 Hz).
- Audio stream: strided 1D convs on the waveform (the first with a 65-tap kernel, as the
  original), then an adaptive average pool to exactly the video's T/2 steps:
  (N, C, L) -> (N, Ca, T/2). The strides bring 24 kHz close to the video rate; the pool
  absorbs the remainder so any window length or sample rate fuses.
- Fusion: the audio features are tiled over the video's spatial grid and concatenated
  channel-wise, then three 3D residual blocks, the last two halving time and space:
  three temporal scales T/2, T/4, T/8 (8, 4, 2 Hz for T = 8), returned by :meth:`features`
  for the separation u-net.
- Head: global average pooling of the last scale and a linear layer -> one logit,
  ``p(synchronised) = sigmoid(logit)``. Because pooling and the head are linear, the logit is
  the mean over space-time patches of ``w . f_x + b``: :meth:`patch_logits` returns those
  per-patch terms, whose magnitude is the class activation map (:mod:`baselines.multisensory.cam`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["FusedPreset", "PRESETS", "FusedNet", "sync_logits", "sync_labels"]

# Crops are float [0, 1]; the same per-channel statistics as trainer/models.py (Kinetics).
VIDEO_MEAN = (0.43216, 0.394666, 0.37645)
VIDEO_STD = (0.22803, 0.22145, 0.216989)


@dataclass(frozen=True)
class FusedPreset:
    video_widths: tuple[int, int]            # stem, residual block
    audio_widths: tuple[int, ...]            # one strided conv each
    audio_kernels: tuple[int, ...]
    audio_strides: tuple[int, ...]
    fused_widths: tuple[int, int, int]       # the three temporal scales


PRESETS = {
    # CPU: about 0.25 GFLOP per 8 x 112 x 112 example.
    "tiny": FusedPreset((8, 16), (16, 16, 32, 32), (65, 15, 15, 15), (4, 4, 4, 4), (24, 48, 96)),
    # Widths of the original (64-channel video stem, 64-128-128-256 audio, 128-256-512 fused).
    "paper": FusedPreset((64, 64), (64, 128, 128, 256), (65, 15, 15, 15), (4, 4, 4, 4),
                         (128, 256, 512)),
}


class ResBlock3d(nn.Module):
    """Two 3x3x3 conv-BN layers with a residual connection (1x1x1 projection when needed)."""

    def __init__(self, in_channels: int, out_channels: int, stride: tuple[int, int, int]):
        super().__init__()
        self.conv1 = nn.Conv3d(in_channels, out_channels, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm3d(out_channels)
        self.conv2 = nn.Conv3d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm3d(out_channels)
        self.shortcut = (nn.Identity() if in_channels == out_channels and stride == (1, 1, 1)
                         else nn.Sequential(nn.Conv3d(in_channels, out_channels, 1, stride,
                                                      bias=False),
                                            nn.BatchNorm3d(out_channels)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)), inplace=True)
        return F.relu(self.bn2(self.conv2(y)) + self.shortcut(x), inplace=True)


class FusedNet(nn.Module):
    """Video (N, 3, T, S, S) in [0, 1] + waveform (N, C, L) -> sync logit (N,).

    Args:
        audio_channels: C, 1 (mono W) or 4 (FOA rotated toward the crop).
        preset: ``tiny`` or ``paper`` (:data:`PRESETS`).
    """

    def __init__(self, audio_channels: int = 1, preset: str = "tiny"):
        super().__init__()
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
        spec = PRESETS[preset]
        self.audio_channels, self.preset = audio_channels, preset
        self.register_buffer("mean", torch.tensor(VIDEO_MEAN).view(1, 3, 1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(VIDEO_STD).view(1, 3, 1, 1, 1), persistent=False)
        stem, video_width = spec.video_widths
        self.video = nn.Sequential(
            nn.Conv3d(3, stem, (5, 7, 7), (2, 2, 2), (2, 3, 3), bias=False),
            nn.BatchNorm3d(stem), nn.ReLU(inplace=True),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),
            ResBlock3d(stem, video_width, (1, 1, 1)))
        layers: list[nn.Module] = []
        in_channels = audio_channels
        for width, kernel, stride in zip(spec.audio_widths, spec.audio_kernels, spec.audio_strides):
            layers += [nn.Conv1d(in_channels, width, kernel, stride, kernel // 2, bias=False),
                       nn.BatchNorm1d(width), nn.ReLU(inplace=True)]
            in_channels = width
        self.audio = nn.Sequential(*layers)
        widths = spec.fused_widths
        self.fused = nn.ModuleList([
            ResBlock3d(video_width + in_channels, widths[0], (1, 1, 1)),
            ResBlock3d(widths[0], widths[1], (2, 2, 2)),
            ResBlock3d(widths[1], widths[2], (2, 2, 2))])
        self.head = nn.Linear(widths[2], 1)
        self.scale_channels = tuple(widths)

    def encode_video(self, video: torch.Tensor) -> torch.Tensor:
        """(N, 3, T, S, S) in [0, 1] -> (N, Cv, T', S', S') with T' = ceil(T / 2)."""
        return self.video((video - self.mean) / self.std)

    def encode_audio(self, audio: torch.Tensor, n_steps: int) -> torch.Tensor:
        """(N, C, L) -> (N, Ca, n_steps): strided convs, then exactly the video's rate."""
        if audio.shape[1] != self.audio_channels:
            raise ValueError(f"expected {self.audio_channels} audio channel(s), got "
                             f"{tuple(audio.shape)}")
        return F.adaptive_avg_pool1d(self.audio(audio), n_steps)

    def fuse(self, video_features: torch.Tensor, audio: torch.Tensor) -> list[torch.Tensor]:
        """Fused features at the three temporal scales, each (N, C_i, T_i, H_i, W_i)."""
        steps, height, width = video_features.shape[2:]
        tiled = self.encode_audio(audio, steps)[..., None, None].expand(-1, -1, -1, height, width)
        x = torch.cat([video_features, tiled], dim=1)
        scales = []
        for block in self.fused:
            x = block(x)
            scales.append(x)
        return scales

    def features(self, video: torch.Tensor, audio: torch.Tensor) -> list[torch.Tensor]:
        return self.fuse(self.encode_video(video), audio)

    def patch_logits(self, last: torch.Tensor) -> torch.Tensor:
        """``w . f_x + b`` for every space-time patch of the last scale: (N, T, H, W)."""
        return self.head(last.permute(0, 2, 3, 4, 1)).squeeze(-1)

    def classify(self, last: torch.Tensor) -> torch.Tensor:
        """Global average pool + linear: (N, C, T, H, W) -> (N,) logits."""
        return self.head(last.mean(dim=(2, 3, 4))).squeeze(-1)

    def forward(self, video: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        return self.classify(self.features(video, audio)[-1])


def sync_logits(model: FusedNet, video: torch.Tensor, audio_pos: torch.Tensor,
                audio_neg: torch.Tensor) -> torch.Tensor:
    """Logits (2B,) of B positives then B negatives; the video stream runs once per clip."""
    video_features = model.encode_video(video)
    pair_video = torch.cat([video_features, video_features], dim=0)
    return model.classify(model.fuse(pair_video, torch.cat([audio_pos, audio_neg], dim=0))[-1])


def sync_labels(batch_size: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Targets (2B,) for :func:`sync_logits`: 1 for the B positives, 0 for the B negatives."""
    return torch.cat([torch.ones(batch_size, device=device),
                      torch.zeros(batch_size, device=device)])
