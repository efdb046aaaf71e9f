"""Encoders, translation networks and projection heads (Morgado et al. 2020, Sec. 2.2).

Shapes: B clips, K viewpoints, C audio channels (4 FOA log-mel, 7 with FOA-IV, 1 beam),
M mel bands, F audio frames, T video frames, S crop size, D = feature_dim, E = embed_dim.

- ``f_v``: video encoder, (N, 3, T, S, S) in [0, 1] -> (N, D). ``paper``: the authors'
  R(2+1)D-18 (``models/video.py`` of pedro-morgado/AVSpatialAlignment): a full 3-D stem
  (3x7x7, stride 1x2x2, no pooling), four stages of two residual blocks (64, 128, 256, 512;
  stride 2 in time and space at the first block of stages 3-5), each block two (2+1)D
  convolutions whose middle width is the output width, a 1x1x1 convolution on the shortcut when
  the shape changes, and global *max* pooling; D = 512. ``tiny``: four (2+1)D conv blocks of
  widths 16-32-64-D with average pooling, for CPU runs.
- ``f_a``: audio encoder, (N, C, M, F) -> (N, D). ``paper``: the authors' 9-layer VGG-style
  CNN (``models/audio.py``): conv 7x7 stride 2 to 64, then pairs of conv3x3 64-64, 128-128
  (first stride 2), 256-256 (first stride 2), 512-512, every conv BN + ReLU, no bias, global
  max pooling; 4,735,104 parameters for 4 channels. ``tiny``: nine conv3x3-BN-ReLU layers of
  widths 16-16-32-32-64-64-64-64-D with 2x2 max pooling after layers 2, 4, 6 and 8.
- ``g_a2v`` / ``g_v2a``: translation networks. The K viewpoint features of one clip and one
  modality form a sequence of K tokens; a post-norm transformer encoder (depth 2, attention
  then a clip-wise feed-forward, each followed by residual + LayerNorm, eqs. 3-5) mixes them,
  so every output token sees the whole sphere, and output token k is the predicted feature
  of the *other* modality at viewpoint k:
  ``v̄^1..v̄^K = g_a2v(a^1..a^K)`` and ``ā^1..ā^K = g_v2a(v^1..v^K)`` (eqs. 1-2). No positional
  encoding by default (the set of viewpoints is unordered); optionally a learned encoding of
  each viewpoint's direction (an MLP on its unit vector) is added to the tokens.
- Heads: linear projections to E dims compared by cosine similarity. As the authors'
  ``Video2AudioSeq`` there are four: ``video_head`` and ``audio_head`` embed the encoder
  features v, a (targets), ``video_pred_head`` and ``audio_pred_head`` embed the translated
  v̄, ā (predictions); ``separate_prediction_heads=False`` shares one head per feature space.
  AVC compares video_head(v) with audio_head(a); AVSA compares video_pred_head(v̄) with
  video_head(v) and audio_pred_head(ā) with audio_head(a) (eq. 8).
- The translation transformer is the authors' (``multihead: false``): one attention head by
  default, post-norm layers, and a ReLU after every layer's output (``output_relu``).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
import torch.nn as nn

from trainer.config import ModelConfig

# torchvision's video models are trained on Kinetics-400 crops normalised with these.
VIDEO_MEAN = (0.43216, 0.394666, 0.37645)
VIDEO_STD = (0.22803, 0.22145, 0.216989)

AUDIO_WIDTHS = {"tiny": (16, 16, 32, 32, 64, 64, 64, 64)}
AUDIO_POOL_AFTER = (1, 3, 5, 7)          # 0-based layer indices followed by 2x2 max pooling
TINY_VIDEO_WIDTHS = (16, 32, 64)


def direction_vector(azimuth_rad: torch.Tensor, elevation_rad: torch.Tensor) -> torch.Tensor:
    """Unit vectors (..., 3) = (cos el cos az, cos el sin az, sin el), x front, y left, z up."""
    cos_el = torch.cos(elevation_rad)
    return torch.stack([cos_el * torch.cos(azimuth_rad), cos_el * torch.sin(azimuth_rad),
                        torch.sin(elevation_rad)], dim=-1)


def conv_bn_relu(in_channels: int, out_channels: int, kernel: int, stride: int = 1
                 ) -> list[nn.Module]:
    return [nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2,
                      bias=False), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)]


class AudioEncoder(nn.Module):
    """(N, C, M, F) normalised features -> (N, D) by nine conv-BN-ReLU layers + global max
    (``paper``: the authors' strided VGG; ``tiny``: 3x3 layers with 2x2 max pooling)."""

    def __init__(self, in_channels: int, feature_dim: int, preset: str):
        super().__init__()
        layers: list[nn.Module] = []
        if preset == "paper":
            if feature_dim != 512:
                raise ValueError(f"the paper audio encoder outputs 512 features, not {feature_dim}")
            layers += conv_bn_relu(in_channels, 64, 7, stride=2)
            for width_in, width, stride in ((64, 64, 1), (64, 128, 2), (128, 256, 2),
                                            (256, 512, 1)):
                layers += conv_bn_relu(width_in, width, 3, stride) + conv_bn_relu(width, width, 3)
        else:
            widths = (*AUDIO_WIDTHS[preset], feature_dim)
            for index, width in enumerate(widths):
                layers += conv_bn_relu(in_channels, width, 3)
                if index in AUDIO_POOL_AFTER:
                    layers.append(nn.MaxPool2d(2, ceil_mode=True))
                in_channels = width
        self.layers = nn.Sequential(*layers)

    def feature_map(self, audio: torch.Tensor) -> torch.Tensor:
        """(N, C, M, F) -> (N, D, M', F'): the last layer's map before global pooling (mel and
        time axes down-sampled by the strides / pools; frame-wise downstream tasks read it)."""
        # NHWC lets oneDNN pick faster CPU kernels (bench/train.py measures the ratio); the
        # result is the same up to float rounding.
        return self.layers(audio.contiguous(memory_format=torch.channels_last))

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.feature_map(audio).amax(dim=(2, 3))


def conv2plus1d(in_channels: int, out_channels: int, spatial_stride: int,
                temporal_stride: int) -> nn.Sequential:
    """A (2+1)D block: 1x3x3 spatial conv, then 3x1x1 temporal conv, each BN + ReLU."""
    return nn.Sequential(
        nn.Conv3d(in_channels, out_channels, (1, 3, 3), stride=(1, spatial_stride, spatial_stride),
                  padding=(0, 1, 1), bias=False),
        nn.BatchNorm3d(out_channels), nn.ReLU(inplace=True),
        nn.Conv3d(out_channels, out_channels, (3, 1, 1), stride=(temporal_stride, 1, 1),
                  padding=(1, 0, 0), bias=False),
        nn.BatchNorm3d(out_channels), nn.ReLU(inplace=True))


class R2Plus1DBlock(nn.Module):
    """The authors' basic (2+1)D residual block: spatial 1x3x3 -> BN -> ReLU -> temporal 3x1x1
    -> BN -> ReLU -> spatial -> BN -> ReLU -> temporal, plus the shortcut (a 1x1x1 strided
    convolution when the shape changes), then BN and ReLU. Middle widths = output width."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()

        def spatial(c_in: int, s: int) -> nn.Conv3d:
            return nn.Conv3d(c_in, out_channels, (1, 3, 3), stride=(1, s, s), padding=(0, 1, 1),
                             bias=False)

        def temporal(s: int) -> nn.Conv3d:
            return nn.Conv3d(out_channels, out_channels, (3, 1, 1), stride=(s, 1, 1),
                             padding=(1, 0, 0), bias=False)

        self.residual = nn.Sequential(
            spatial(in_channels, stride), nn.BatchNorm3d(out_channels), nn.ReLU(inplace=True),
            temporal(stride), nn.BatchNorm3d(out_channels), nn.ReLU(inplace=True),
            spatial(out_channels, 1), nn.BatchNorm3d(out_channels), nn.ReLU(inplace=True),
            temporal(1))
        self.shortcut = (nn.Identity() if stride == 1 and in_channels == out_channels else
                         nn.Conv3d(in_channels, out_channels, 1, stride=stride, bias=False))
        self.out = nn.Sequential(nn.BatchNorm3d(out_channels), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.residual(x) + self.shortcut(x))


def authors_r2plus1d_18() -> nn.Sequential:
    """The authors' R(2+1)D-18 trunk: (N, 3, T, S, S) -> (N, 512) with global max pooling;
    named ``stem``, ``layer1``..``layer4`` (as torchvision's), ``pool``, ``flatten``."""
    stages: dict[str, nn.Module] = {"stem": nn.Sequential(
        nn.Conv3d(3, 64, (3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3), bias=False),
        nn.BatchNorm3d(64), nn.ReLU(inplace=True))}
    in_channels = 64
    for index, width in enumerate((64, 128, 256, 512)):
        stages[f"layer{index + 1}"] = nn.Sequential(
            R2Plus1DBlock(in_channels, width, 1 if index == 0 else 2),
            R2Plus1DBlock(width, width, 1))
        in_channels = width
    stages["pool"], stages["flatten"] = nn.AdaptiveMaxPool3d(1), nn.Flatten()
    return nn.Sequential(OrderedDict(stages))


class VideoEncoder(nn.Module):
    """(N, 3, T, S, S) crops in [0, 1] -> (N, D); normalises with the Kinetics mean/std.

    ``input_size`` / ``input_frames`` (0 = off) first resample the crops (area averaging in
    space, evenly spaced frames in time): a compute knob for CPU runs."""

    def __init__(self, feature_dim: int, preset: str, input_size: int = 0, input_frames: int = 0):
        super().__init__()
        self.input_size, self.input_frames = input_size, input_frames
        self.register_buffer("mean", torch.tensor(VIDEO_MEAN).view(1, 3, 1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(VIDEO_STD).view(1, 3, 1, 1, 1), persistent=False)
        if preset == "paper":
            if feature_dim != 512:
                raise ValueError(f"the paper video encoder outputs 512 features, not {feature_dim}")
            self.net = authors_r2plus1d_18()
        else:
            widths = (*TINY_VIDEO_WIDTHS, feature_dim)
            blocks, in_channels = [], 3
            for index, width in enumerate(widths):
                blocks.append(conv2plus1d(in_channels, width, 2, 2 if index >= 2 else 1))
                in_channels = width
            self.net = nn.Sequential(*blocks, nn.AdaptiveAvgPool3d(1), nn.Flatten())

    def resample(self, video: torch.Tensor) -> torch.Tensor:
        n_frames, size = video.shape[2], video.shape[-1]
        if self.input_frames and n_frames > self.input_frames:
            index = torch.linspace(0, n_frames - 1, self.input_frames, device=video.device)
            video = video.index_select(2, index.round().long())
        if self.input_size and size != self.input_size:
            video = nn.functional.interpolate(
                video, size=(video.shape[2], self.input_size, self.input_size), mode="area")
        return video

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.net((self.resample(video) - self.mean) / self.std)


class TranslationNetwork(nn.Module):
    """(B, K, D) viewpoint features of one modality -> (B, K, D) predictions of the other."""

    def __init__(self, dim: int, depth: int, heads: int, dropout: float, viewpoint_encoding: bool,
                 output_relu: bool = True):
        super().__init__()
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(dim, heads, dim_feedforward=4 * dim, dropout=dropout,
                                       batch_first=True, norm_first=False)
            for _ in range(depth))
        self.output_relu = output_relu
        self.viewpoint_mlp = (nn.Sequential(nn.Linear(3, dim), nn.ReLU(), nn.Linear(dim, dim))
                              if viewpoint_encoding else None)

    def forward(self, tokens: torch.Tensor, azimuth_rad: torch.Tensor | None = None,
                elevation_rad: torch.Tensor | None = None) -> torch.Tensor:
        if self.viewpoint_mlp is not None:
            tokens = tokens + self.viewpoint_mlp(direction_vector(azimuth_rad, elevation_rad))
        for layer in self.layers:
            tokens = layer(tokens)
            if self.output_relu:          # the authors' TransformerLayer ends with a ReLU
                tokens = torch.relu(tokens)
        return tokens


class AVSpatialModel(nn.Module):
    """Encoders f_v, f_a; translations g_a2v, g_v2a; heads. Build with :func:`build_model`."""

    def __init__(self, audio_channels: int, preset: str = "paper", feature_dim: int = 512,
                 embed_dim: int = 128, transformer_depth: int = 2, transformer_heads: int = 4,
                 transformer_dropout: float = 0.1, viewpoint_encoding: bool = False,
                 video_input_size: int = 0, video_input_frames: int = 0,
                 separate_prediction_heads: bool = True, transformer_output_relu: bool = True):
        super().__init__()
        self.video_encoder = VideoEncoder(feature_dim, preset, video_input_size,
                                          video_input_frames)
        self.audio_encoder = AudioEncoder(audio_channels, feature_dim, preset)
        translation = dict(dim=feature_dim, depth=transformer_depth, heads=transformer_heads,
                           dropout=transformer_dropout, viewpoint_encoding=viewpoint_encoding,
                           output_relu=transformer_output_relu)
        self.audio_to_video = TranslationNetwork(**translation)      # g_a2v
        self.video_to_audio = TranslationNetwork(**translation)      # g_v2a
        self.video_head = nn.Linear(feature_dim, embed_dim)
        self.audio_head = nn.Linear(feature_dim, embed_dim)
        self.video_pred_head = (nn.Linear(feature_dim, embed_dim) if separate_prediction_heads
                                else self.video_head)
        self.audio_pred_head = (nn.Linear(feature_dim, embed_dim) if separate_prediction_heads
                                else self.audio_head)

    def encode(self, video: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """video (B, K, 3, T, S, S), audio (B, K, C, M, F) -> features v, a, each (B, K, D)."""
        b, k = video.shape[:2]
        video_features = self.video_encoder(video.flatten(0, 1)).view(b, k, -1)
        audio_features = self.audio_encoder(audio.flatten(0, 1)).view(b, k, -1)
        return video_features, audio_features

    def translation_parameters(self) -> list[nn.Parameter]:
        """Parameters trained only in the phases that translate: the translation networks
        and, when separate, the prediction heads."""
        params = [*self.audio_to_video.parameters(), *self.video_to_audio.parameters()]
        if self.video_pred_head is not self.video_head:
            params += [*self.video_pred_head.parameters(), *self.audio_pred_head.parameters()]
        return params

    def forward(self, video: torch.Tensor, audio: torch.Tensor, azimuth_rad: torch.Tensor,
                elevation_rad: torch.Tensor, translate: bool = False) -> dict[str, torch.Tensor]:
        """Embeddings (B, K, E), not yet normalised: ``video`` = video_head(v), ``audio`` =
        audio_head(a); with ``translate`` also ``video_from_audio`` = video_pred_head(g_a2v(a))
        and ``audio_from_video`` = audio_pred_head(g_v2a(v))."""
        video_features, audio_features = self.encode(video, audio)
        out = {"video": self.video_head(video_features), "audio": self.audio_head(audio_features)}
        if translate:
            out["video_from_audio"] = self.video_pred_head(
                self.audio_to_video(audio_features, azimuth_rad, elevation_rad))
            out["audio_from_video"] = self.audio_pred_head(
                self.video_to_audio(video_features, azimuth_rad, elevation_rad))
        return out


def fuse_batchnorm(module: nn.Module) -> nn.Module:
    """Fold every BatchNorm that directly follows a convolution in an ``nn.Sequential`` into
    that convolution's weights (in place, eval mode only; the BatchNorm becomes Identity).

    Frozen inference gives the same outputs up to float rounding and skips a pass over every
    activation map (measured in ``bench/train.py``)."""
    if module.training:
        raise ValueError("fuse_batchnorm needs a module in eval mode")
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for child in module.children():
        fuse_batchnorm(child)
    if isinstance(module, nn.Sequential):
        for index in range(len(module) - 1):
            conv, norm = module[index], module[index + 1]
            if (isinstance(conv, (nn.Conv2d, nn.Conv3d))
                    and isinstance(norm, nn.modules.batchnorm._BatchNorm)
                    and norm.track_running_stats):
                module[index] = fuse_conv_bn_eval(conv, norm)
                module[index + 1] = nn.Identity()
    return module


def model_args_from_config(model_cfg: ModelConfig, audio_channels: int) -> dict[str, Any]:
    """Constructor arguments of :class:`AVSpatialModel` (stored in checkpoints)."""
    return dict(audio_channels=audio_channels, preset=model_cfg.preset,
                feature_dim=model_cfg.feature_dim, embed_dim=model_cfg.embed_dim,
                transformer_depth=model_cfg.transformer_depth,
                transformer_heads=model_cfg.transformer_heads,
                transformer_dropout=model_cfg.transformer_dropout,
                viewpoint_encoding=model_cfg.viewpoint_encoding,
                video_input_size=model_cfg.video_input_size,
                video_input_frames=model_cfg.video_input_frames,
                separate_prediction_heads=model_cfg.separate_prediction_heads,
                transformer_output_relu=model_cfg.transformer_output_relu)


def build_model(model_cfg: ModelConfig, audio_channels: int) -> AVSpatialModel:
    return AVSpatialModel(**model_args_from_config(model_cfg, audio_channels))
