"""On/off-screen source separation (Owens & Efros 2018, Sec. 5.2), with an audio-only control.

Mixtures: the clip's own audio aligned with its video is the *on-screen* sound, the aligned
audio of another clip of the batch (the next one, cyclically) the *off-screen* sound; both are
scaled to unit RMS of W first, so mixtures are at 0 dB. All channels are mixed (an FOA fused
network sees the FOA mixture); separation works on W.

Model: a u-net on the log-magnitude spectrogram of the W mixture (B, 1, F, T) predicts two
sigmoid masks; on/off estimates are the masks times the mixture's magnitude, and waveforms
come back with the mixture's phase (inverse STFT). The audio-visual u-net also receives the
fused network's features (video + mixture) at its three temporal scales: each scale is
averaged over space, resampled in time to the encoder level with the closest temporal
sampling rate (:func:`assign_scales_to_levels`), tiled over frequency and concatenated to
that level's output. The audio-only u-net is the same without them.

Losses (per example, on magnitudes compressed as ``|X| ** p``, mean absolute error over bins):
``plain = L1(f_on, x_on) + L1(f_off, x_off)``; the permutation-invariant ``pit`` takes the
smaller of that and the swapped assignment (Yu et al. 2017), i.e. it separates without
committing to which output is on-screen. The audio-visual u-net trains with ``plain`` by
default (it must say which sound is on screen), the audio-only control with ``pit`` (it
cannot); compare them on ``*_pit`` scores, and read ``*_on`` for the audio-visual model.

Metrics on W waveforms (B, L): ``SDR = 10 log10(|s|^2 / |s - y|^2)`` (the plain
signal-to-distortion ratio, no BSS-eval filter) and scale-invariant ``SI-SDR`` (zero-mean,
``y`` projected on ``s``); improvements (``SDRi``) subtract the mixture's score against the
same reference. ``*_on``: output 0 scored as the on-screen sound; ``*_pit``: both outputs
under the better assignment, averaged over the two sources.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from baselines.multisensory.config import SeparationConfig
from baselines.multisensory.model import FusedNet

__all__ = [
    "make_mixtures",
    "stft",
    "istft",
    "assign_scales_to_levels",
    "SeparationUNet",
    "SeparationModel",
    "compressed_l1",
    "plain_loss",
    "pit_loss",
    "separation_loss",
    "sdr_db",
    "si_sdr_db",
    "separation_metrics",
    "evaluate_separation",
]

RMS_FLOOR = 1e-3      # relative to the window-normalised audio (see baselines.multisensory.data)
MAG_FLOOR = 1e-4
EPS = 1e-8


def make_mixtures(audio: torch.Tensor) -> dict[str, torch.Tensor]:
    """On-screen, off-screen and mixture waveforms (B, C, L) from aligned audio (B, C, L).

    Example b's off-screen sound is example (b + 1) mod B's on-screen sound; each is scaled
    to unit RMS of channel 0 (W) before mixing."""
    if audio.shape[0] < 2:
        raise ValueError("mixing needs at least two clips per batch")
    rms = audio[:, :1].pow(2).mean(dim=-1, keepdim=True).sqrt().clamp_min(RMS_FLOOR)
    on = audio / rms
    off = torch.roll(on, shifts=-1, dims=0)
    return {"on": on, "off": off, "mix": on + off}


def _window(n_fft: int, device: torch.device) -> torch.Tensor:
    return torch.hann_window(n_fft, device=device)


def stft(wave: torch.Tensor, n_fft: int, hop_length: int) -> torch.Tensor:
    """(B, L) -> (B, n_fft // 2 + 1, L // hop + 1) complex (Hann, centred)."""
    return torch.stft(wave, n_fft, hop_length, window=_window(n_fft, wave.device),
                      center=True, return_complex=True)


def istft(spec: torch.Tensor, n_fft: int, hop_length: int, length: int) -> torch.Tensor:
    """Inverse of :func:`stft`: (B, F, T) complex -> (B, length)."""
    return torch.istft(spec, n_fft, hop_length, window=_window(n_fft, spec.device),
                       center=True, length=length)


def assign_scales_to_levels(scale_lengths: Sequence[int],
                            level_lengths: Sequence[int]) -> list[int]:
    """For each video scale (time steps over the window), the u-net encoder level whose number
    of time steps (i.e. temporal sampling rate, same window) is closest in ratio."""
    return [int(np.argmin([abs(math.log(level / scale)) for level in level_lengths]))
            for scale in scale_lengths]


def _conv_block(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False),
                         nn.BatchNorm2d(out_channels), nn.LeakyReLU(0.2, inplace=True))


class SeparationUNet(nn.Module):
    """(B, 1, F, T) log-magnitude -> (B, 2, F, T) mask logits (on, off).

    Encoder level l: a stride-2 conv to ``widths[l]`` channels, then ``extra_channels[l]``
    channels of video features concatenated (0 for none). Decoder: upsample to the skip's
    size, concatenate the skip, conv; the last layer also sees the input.
    """

    def __init__(self, widths: Sequence[int], extra_channels: Sequence[int] | None = None):
        super().__init__()
        extra = list(extra_channels or [0] * len(widths))
        if len(extra) != len(widths):
            raise ValueError(f"{len(widths)} levels but {len(extra)} extra channel counts")
        self.extra_channels = extra
        skip_channels, in_channels = [], 1
        self.down = nn.ModuleList()
        for width, added in zip(widths, extra):
            self.down.append(_conv_block(in_channels, width, 2))
            in_channels = width + added
            skip_channels.append(in_channels)
        self.up = nn.ModuleList()
        current = skip_channels[-1]
        for level in range(len(widths) - 1, 0, -1):
            self.up.append(_conv_block(current + skip_channels[level - 1], widths[level - 1], 1))
            current = widths[level - 1]
        self.out = nn.Conv2d(current + 1, 2, 3, 1, 1)

    def level_lengths(self, n_frames: int) -> list[int]:
        """Time steps at each encoder level for an input of ``n_frames`` STFT frames."""
        lengths = []
        for _ in self.down:
            n_frames = (n_frames - 1) // 2 + 1
            lengths.append(n_frames)
        return lengths

    def forward(self, x: torch.Tensor,
                extras: Sequence[torch.Tensor | None] | None = None) -> torch.Tensor:
        """``extras[l]``: (B, extra_channels[l], T_l) features for level l, or None."""
        skips, h = [], x
        for level, down in enumerate(self.down):
            h = down(h)
            if self.extra_channels[level]:
                if extras is None or extras[level] is None:
                    raise ValueError(f"level {level} expects {self.extra_channels[level]} "
                                     f"video channels")
                feature = extras[level][:, :, None, :].expand(-1, -1, h.shape[2], -1)
                h = torch.cat([h, feature], dim=1)
            skips.append(h)
        for up, skip in zip(self.up, reversed(skips[:-1])):
            h = up(torch.cat([F.interpolate(h, size=skip.shape[-2:]), skip], dim=1))
        h = F.interpolate(h, size=x.shape[-2:])
        return self.out(torch.cat([h, x], dim=1))


class SeparationModel(nn.Module):
    """Mixture (B, C, L) [+ video (B, 3, T, S, S)] -> on/off estimates.

    ``fused=None`` gives the audio-only u-net (trained with ``cfg.audio_only_loss``, else
    ``cfg.loss``: :attr:`loss_kind`). ``probe`` = (n_frames T, crop size S) fixes the video
    scales' time steps, hence their encoder levels.
    """

    def __init__(self, cfg: SeparationConfig, n_audio_samples: int, fused: FusedNet | None = None,
                 probe: tuple[int, int] | None = None, freeze_fused: bool = False):
        super().__init__()
        self.n_fft, self.hop_length, self.power = cfg.n_fft, cfg.hop_length, cfg.compress_power
        self.loss_kind = cfg.loss if fused is not None else cfg.audio_only_loss
        self.fused, self.freeze_fused = fused, freeze_fused
        widths = list(cfg.unet_widths)
        n_frames = n_audio_samples // cfg.hop_length + 1
        extra = [0] * len(widths)
        self.scale_levels: list[int] = []
        if fused is not None:
            if probe is None:
                raise ValueError("an audio-visual separation model needs probe=(T, S)")
            with torch.no_grad():
                was_training = fused.training
                fused.eval()
                scales = fused.features(torch.zeros(1, 3, probe[0], probe[1], probe[1]),
                                        torch.zeros(1, fused.audio_channels, n_audio_samples))
                fused.train(was_training)
            levels = SeparationUNet(widths).level_lengths(n_frames)
            self.scale_levels = assign_scales_to_levels([s.shape[2] for s in scales], levels)
            for scale, level in zip(scales, self.scale_levels):
                extra[level] += scale.shape[1]
            if freeze_fused:
                fused.requires_grad_(False)
        self.unet = SeparationUNet(widths, extra)

    def train(self, mode: bool = True) -> "SeparationModel":
        super().train(mode)
        if self.fused is not None and self.freeze_fused:
            self.fused.eval()          # a frozen network keeps its batch-norm statistics
        return self

    def _video_extras(self, mix: torch.Tensor, video: torch.Tensor,
                      level_lengths: Sequence[int]) -> list[torch.Tensor | None]:
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_fused):
            scales = self.fused.features(video, mix)
        extras: list[list[torch.Tensor]] = [[] for _ in level_lengths]
        for scale, level in zip(scales, self.scale_levels):
            pooled = scale.mean(dim=(3, 4))                                   # (B, C, T_s)
            extras[level].append(F.interpolate(pooled, size=level_lengths[level], mode="linear",
                                               align_corners=False))
        return [torch.cat(items, dim=1) if items else None for items in extras]

    def forward(self, mix: torch.Tensor,
                video: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Returns ``mix_spec`` (B, F, T) complex STFT of W, ``masks`` (B, 2, F, T) in [0, 1],
        ``magnitudes`` (B, 2, F, T) and ``waves`` (B, 2, L) of the on/off estimates."""
        spec = stft(mix[:, 0], self.n_fft, self.hop_length)
        features = torch.log(spec.abs() + MAG_FLOOR)[:, None]
        extras = None
        if self.fused is not None:
            if video is None:
                raise ValueError("the audio-visual separation model needs the video")
            extras = self._video_extras(mix, video, self.unet.level_lengths(spec.shape[-1]))
        masks = torch.sigmoid(self.unet(features, extras))
        estimate = masks * spec[:, None]
        waves = istft(estimate.flatten(0, 1), self.n_fft, self.hop_length, mix.shape[-1])
        return {"mix_spec": spec, "masks": masks, "magnitudes": estimate.abs(),
                "waves": waves.view(mix.shape[0], 2, -1)}

    def target_magnitudes(self, on: torch.Tensor, off: torch.Tensor) -> torch.Tensor:
        """(B, 2, F, T) magnitudes of the W channels of the true on/off sounds."""
        return torch.stack([stft(on[:, 0], self.n_fft, self.hop_length).abs(),
                            stft(off[:, 0], self.n_fft, self.hop_length).abs()], dim=1)


def compressed_l1(prediction: torch.Tensor, target: torch.Tensor, power: float) -> torch.Tensor:
    """Mean |c(pred) - c(target)| over all but the batch axis, ``c(x) = (x + 1e-4) ** power``."""
    diff = (prediction + MAG_FLOOR).pow(power) - (target + MAG_FLOOR).pow(power)
    return diff.abs().flatten(1).mean(dim=1)


def plain_loss(prediction: torch.Tensor, target: torch.Tensor, power: float) -> torch.Tensor:
    """(B,) on/off loss: output 0 vs the on-screen target plus output 1 vs the off-screen one.
    ``prediction``/``target`` (B, 2, F, T) magnitudes."""
    return (compressed_l1(prediction[:, 0], target[:, 0], power)
            + compressed_l1(prediction[:, 1], target[:, 1], power))


def pit_loss(prediction: torch.Tensor, target: torch.Tensor,
             power: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Permutation-invariant loss (B,) and whether the swapped assignment was taken (B,)."""
    direct = plain_loss(prediction, target, power)
    swapped = plain_loss(prediction.flip(1), target, power)
    return torch.minimum(direct, swapped), swapped < direct


def separation_loss(kind: str, prediction: torch.Tensor, target: torch.Tensor,
                    power: float) -> torch.Tensor:
    """Per-example (B,) ``plain`` or ``pit`` loss of magnitudes (B, 2, F, T)."""
    if kind == "plain":
        return plain_loss(prediction, target, power)
    if kind == "pit":
        return pit_loss(prediction, target, power)[0]
    raise ValueError(f"separation loss must be 'plain' or 'pit', got {kind!r}")


def sdr_db(estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Signal-to-distortion ratio (B,) in dB of estimates against references (B, L)."""
    signal = reference.pow(2).sum(dim=-1)
    error = (reference - estimate).pow(2).sum(dim=-1)
    return 10.0 * torch.log10((signal + EPS) / (error + EPS))


def si_sdr_db(estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Scale-invariant SDR (B,) in dB (Le Roux et al. 2019), zero-mean signals (B, L)."""
    estimate = estimate - estimate.mean(dim=-1, keepdim=True)
    reference = reference - reference.mean(dim=-1, keepdim=True)
    scale = (estimate * reference).sum(dim=-1, keepdim=True) / (
        reference.pow(2).sum(dim=-1, keepdim=True) + EPS)
    target = scale * reference
    noise = estimate - target
    return 10.0 * torch.log10((target.pow(2).sum(dim=-1) + EPS) / (noise.pow(2).sum(dim=-1) + EPS))


def separation_metrics(estimates: torch.Tensor, on: torch.Tensor, off: torch.Tensor,
                       mix: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-example scores (B,) in dB of estimates (B, 2, L) against on/off/mix waveforms (B, L).

    ``sdri_on`` / ``si_sdri_on``: output 0 as the on-screen sound, minus the mixture's score;
    ``sdri_pit`` / ``si_sdri_pit``: mean over both sources under the assignment with the
    higher mean SI-SDR; ``sdr_mix_on``: the mixture's own SDR against the on-screen sound."""
    scores = {}
    for name, metric in (("sdr", sdr_db), ("si_sdr", si_sdr_db)):
        base_on, base_off = metric(mix, on), metric(mix, off)
        direct = torch.stack([metric(estimates[:, 0], on) - base_on,
                              metric(estimates[:, 1], off) - base_off], dim=1)
        swapped = torch.stack([metric(estimates[:, 1], on) - base_on,
                               metric(estimates[:, 0], off) - base_off], dim=1)
        scores[f"{name}i_on"] = direct[:, 0]
        scores[f"{name}i_pit_pair"] = torch.stack([direct.mean(1), swapped.mean(1)], dim=1)
        scores[f"{name}_mix_on"] = base_on
    choose_swapped = scores["si_sdri_pit_pair"][:, 1] > scores["si_sdri_pit_pair"][:, 0]
    for name in ("sdr", "si_sdr"):
        pair = scores.pop(f"{name}i_pit_pair")
        scores[f"{name}i_pit"] = torch.where(choose_swapped, pair[:, 1], pair[:, 0])
    return scores


@torch.no_grad()
def evaluate_separation(models: dict[str, SeparationModel], batches,
                        device: torch.device) -> dict[str, Any]:
    """Mean scores (dB) and training loss (its own kind) of each model over held-out
    mixtures (the same mixtures for all)."""
    for model in models.values():
        model.eval()
    sums: dict[str, dict[str, float]] = {name: {} for name in models}
    count = 0
    for batch in batches:
        video = batch["video"].to(device)
        parts = make_mixtures(batch["audio_pos"].to(device))
        count += video.shape[0]
        for name, model in models.items():
            out = model(parts["mix"], video)
            target = model.target_magnitudes(parts["on"], parts["off"])
            scores = separation_metrics(out["waves"], parts["on"][:, 0], parts["off"][:, 0],
                                        parts["mix"][:, 0])
            scores["loss"] = separation_loss(model.loss_kind, out["magnitudes"], target,
                                             model.power)
            for key, values in scores.items():
                sums[name][key] = sums[name].get(key, 0.0) + float(values.sum())
    return {name: {key: value / max(count, 1) for key, value in values.items()}
            for name, values in sums.items()} | {"n_mixtures": count}
