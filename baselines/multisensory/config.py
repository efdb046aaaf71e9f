"""Configuration of the Owens & Efros (2018) multisensory baseline (``configs/baselines/``).

One dataclass tree serves both tasks of :mod:`baselines.multisensory.train`:

- ``task: sync``: the self-supervised pretext (are video and audio synchronised?), followed
  by the CAM sound-source localisation evaluation;
- ``task: separation``: on/off-screen separation with a u-net fed the fused network's
  features, trained next to an audio-only u-net on the same mixtures.

Loaded like every config of the project (:func:`pipeline.config.load_config`: ``base:``
chains, dotted overrides, strict keys and types). Seconds and degrees appear only here
(``*_s``, ``*_deg``); the code works in samples and radians.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pipeline.config import ConfigError
from trainer.config import OptimConfig

Task = Literal["sync", "separation"]
AudioInput = Literal["mono", "foa"]

#: Waveform channels fed to the fused network: W alone (as the original) or the four ambiX
#: channels rotated toward the crop's viewpoint (our extension).
WAVEFORM_CHANNELS = {"mono": 1, "foa": 4}


@dataclass(frozen=True)
class SyncDataConfig:
    """What one example is made of (see :mod:`baselines.multisensory.data`).

    The stored window is ``audio_window_s`` of FOA with the video centred inside it; positives
    take the audio aligned with the video, negatives the same length shifted by ``s`` with
    ``min_shift_s <= |s| <= max_shift_s`` (both signs). The shifted window must stay inside
    the stored one: ``max_shift_s`` <= (audio window - video span) / 2 (0.25 s for the default
    1 s shards, 0.5 s for those of ``configs/preprocess_sync.yaml``).
    """

    shards_dir: str = "data/shards/synthetic"
    train_split: str = "train"
    val_split: str = "test"                  # held-out split (the synthetic set has train/test)
    viewpoints: Literal["random", "yolo"] = "yolo"
    view_policy: Literal["first", "random"] = "first"   # which of the K stored crops
    audio: AudioInput = "mono"
    audio_window_s: float = 1.0              # stored FOA window length (schema v1: 1 s)
    clip_frames: int = 0                     # 0: all stored frames; else a sub-clip of them,
                                             # at a random start in training, centred in eval
    min_shift_s: float = 0.15
    max_shift_s: float = 0.25
    batch_size: int = 16                     # clips per step, each one positive + one negative
    num_workers: int = 0
    flip_prob: float = 0.5                   # crop flip with the matching FOA mirror (Y -> -Y)

    def validate(self) -> None:
        if not 0.0 < self.min_shift_s <= self.max_shift_s:
            raise ConfigError(f"data: need 0 < min_shift_s <= max_shift_s, got "
                              f"{self.min_shift_s} and {self.max_shift_s}")
        if self.batch_size < 2:
            raise ConfigError(f"data.batch_size must be >= 2 (separation mixes clips of a "
                              f"batch), got {self.batch_size}")
        if self.clip_frames < 0:
            raise ConfigError(f"data.clip_frames must be >= 0, got {self.clip_frames}")
        if self.audio_window_s <= 0:
            raise ConfigError(f"data.audio_window_s must be > 0, got {self.audio_window_s}")

    @property
    def audio_channels(self) -> int:
        return WAVEFORM_CHANNELS[self.audio]


@dataclass(frozen=True)
class FusedModelConfig:
    """The early-fusion network (:mod:`baselines.multisensory.model`); widths per preset."""

    preset: Literal["tiny", "paper"] = "tiny"


@dataclass(frozen=True)
class SeparationConfig:
    """On/off-screen separation (:mod:`baselines.multisensory.separation`).

    Spectrograms of the mono (W) mixture: ``n_fft`` / ``hop_length`` in samples of the stored
    rate. Magnitudes are compressed as ``|X| ** compress_power`` inside the L1 loss.
    """

    n_fft: int = 512
    hop_length: int = 128
    unet_widths: tuple[int, ...] = (16, 32, 64, 128)
    loss: Literal["plain", "pit"] = "plain"             # audio-visual u-net
    audio_only_loss: Literal["plain", "pit"] = "pit"    # the control (cannot tell on from off)
    compress_power: float = 0.3
    pretrained: str = ""          # sync checkpoint initialising the fused network ("" = scratch)
    freeze_fused: bool = False    # keep the pretrained fused network fixed

    def validate(self) -> None:
        if self.hop_length < 1 or self.n_fft < 2 * self.hop_length:
            raise ConfigError(f"separation: need n_fft >= 2 * hop_length >= 2, got n_fft "
                              f"{self.n_fft}, hop_length {self.hop_length}")
        if not self.unet_widths:
            raise ConfigError("separation.unet_widths must list at least one level")
        if self.freeze_fused and not self.pretrained:
            raise ConfigError("separation.freeze_fused needs separation.pretrained (a sync "
                              "checkpoint); a frozen random network would be meaningless")


@dataclass(frozen=True)
class EvalConfig:
    """Held-out evaluation at the end of the run (``data.val_split``)."""

    max_batches: int = 50          # batches of the held-out split scored (0 = all)
    hit_threshold_deg: float = 20.0
    n_cam_figures: int = 4         # clips drawn in cam_examples.png (0 = no figure)


@dataclass(frozen=True)
class BaselineRunConfig:
    """Run settings of a baseline: the trainer's :class:`trainer.config.RunConfig` has no
    epoch count (the curriculum holds it), thread count or time budget, which a baseline needs."""

    out_dir: str = "runs"
    name: str = ""                 # run folder, defaults to the experiment name
    seed: int = 0
    device: str = "auto"           # auto | cpu | cuda | cuda:N
    num_threads: int = 0           # torch CPU threads (0 = torch's default; 1 on shared CPUs)
    epochs: int = 20
    max_steps_per_epoch: int = 0   # 0 = full epoch
    time_budget_s: float = 0.0     # stop training after this many seconds (0 = no limit)
    log_interval: int = 10         # steps
    overwrite: bool = False        # replace a run of the same name


@dataclass(frozen=True)
class MultisensoryConfig:
    experiment: str = "multisensory"
    description: str = ""
    task: Task = "sync"
    data: SyncDataConfig = field(default_factory=SyncDataConfig)
    model: FusedModelConfig = field(default_factory=FusedModelConfig)
    separation: SeparationConfig = field(default_factory=SeparationConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    run: BaselineRunConfig = field(default_factory=BaselineRunConfig)
