"""Training configuration (``configs/train_base.yaml`` + ``configs/experiments/<name>.yaml``).

Degrees appear only here and in logs (``*_deg``); everything downstream uses radians.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from pipeline.config import ConfigError
from pipeline.shards import FEATURE_CHANNELS

#: The audio input kinds (``data.audio_input``) and the stored features each stacks, in order:
#: the one table of them (the channel counts come from the shard schema's FEATURE_CHANNELS).
AUDIO_FEATURES: dict[str, tuple[str, ...]] = {
    "foa": ("logmel_foa",),                   # log-mel of the rotated FOA, 4 channels
    "foa_iv": ("logmel_foa", "iv"),           # + intensity vectors (Wang et al.), 7 channels
    "beamform": ("logmel_beam",),             # log-mel of a beam toward the crop, 1 channel
}
AudioInput = Literal[tuple(AUDIO_FEATURES)]  # type: ignore[valid-type]
ViewpointSource = Literal["random", "yolo"]
Pretext = Literal["avc", "avsa", "avts", "avc_transf", "avts_transf"]
#: AVSA proposal sets (``loss.avsa_candidates``, :func:`trainer.losses.avsa_loss`).
AvsaCandidates = Literal["all_views", "same_view"]
#: Phases that read K viewpoints per clip and train the translation networks.
TRANSLATION_PHASES = ("avsa", "avc_transf", "avts_transf")
#: Pretexts whose batches bring >= 2 windows of every clip (same-clip negatives).
TEMPORAL_PRETEXTS = ("avts", "avts_transf")

AUDIO_CHANNELS = {kind: sum(FEATURE_CHANNELS[key] for key in keys)
                  for kind, keys in AUDIO_FEATURES.items()}


@dataclass(frozen=True)
class DataConfig:
    #: Former names of keys, still read (configs and checkpoints written before the rename).
    RENAMED_KEYS: ClassVar[dict[str, str]] = {"num_viewpoints": "views_per_step"}

    shards_dir: str = "data/shards/synthetic"
    audio_input: AudioInput = "foa"          # which features feed the audio encoder
    viewpoints: ViewpointSource = "random"   # which stored viewpoint set to train on
    views_per_step: int = 4                  # K drawn per sample and step from the stored bank
    batch_size: int = 28                     # clips per step (x K viewpoints)
    # Clips (single crops) per step in the AVC phase; 0 = batch_size. The paper preset sets the
    # authors' 112 (their InstDisc stage: as many crops per step as 28 clips x 4 viewpoints).
    avc_batch_size: int = 0
    num_workers: int = 2
    # Reading fewer viewpoints than stored (the AVC phase reads 1): take YOLO-centred ones
    # before random fill (no effect on random viewpoints or when all are read).
    prefer_detected_views: bool = True
    # AVSA-type phases, training only: this share of each sample's K viewpoints is drawn from
    # the detection-centred viewpoints of the stored `yolo` set (stochastic rounding; fewer
    # when fewer objects were detected), the rest from `data.viewpoints`. 0 = the papers.
    # Evaluation keeps its own viewpoints (uniform ones in the binary tasks).
    object_view_share: float = 0.0
    flip_prob: float = 0.5                   # crop flip, with the matching FOA mirror (Y -> -Y)
    color_jitter: float = 0.2                # brightness/contrast/saturation strength, 0 = off
    volume_jitter_db: float = 3.0            # random gain on all audio channels, dB
    normalize_audio: bool = True             # per-mel-band stats from norm_stats.json
    # Clip-based epochs (the authors' clips_per_video): a training epoch visits every clip this
    # many times, a stored window drawn at random per visit; 0 = every stored window once.
    samples_per_clip: int = 2
    train_split: str = "train"               # split streamed for training
    val_split: str = "val"                   # split for the end-of-epoch loss (skipped if absent)
    avts_windows_per_clip: int = 2           # AVTS: windows of one clip per batch (>= 2)

    def validate(self) -> None:
        if self.views_per_step < 1:
            raise ConfigError(f"data.views_per_step must be >= 1, got {self.views_per_step}")
        if self.batch_size < 2:
            raise ConfigError(f"data.batch_size must be >= 2 (negatives), got {self.batch_size}")
        if self.avc_batch_size == 1 or self.avc_batch_size < 0:
            raise ConfigError(f"data.avc_batch_size must be 0 (= batch_size) or >= 2, got "
                              f"{self.avc_batch_size}")
        if not 0.0 <= self.object_view_share <= 1.0:
            raise ConfigError(f"data.object_view_share must be in [0, 1], got "
                              f"{self.object_view_share}")
        if self.object_view_share > 0 and self.viewpoints == "yolo":
            raise ConfigError("data.object_view_share mixes yolo viewpoints into the random "
                              "set; with data.viewpoints=yolo every viewpoint already comes "
                              "from it (set one of the two)")
        if self.avts_windows_per_clip < 2:
            raise ConfigError(f"data.avts_windows_per_clip must be >= 2 (same-clip negatives), "
                              f"got {self.avts_windows_per_clip}")

    @property
    def audio_channels(self) -> int:
        return AUDIO_CHANNELS[self.audio_input]


@dataclass(frozen=True)
class ModelConfig:
    preset: Literal["tiny", "paper"] = "paper"
    feature_dim: int = 512         # encoder output (paper: 512)
    embed_dim: int = 128           # projection head output
    transformer_depth: int = 2
    transformer_heads: int = 1     # the authors' multihead: false
    transformer_dropout: float = 0.1
    transformer_output_relu: bool = True      # ReLU after each layer, as the authors' layers
    separate_prediction_heads: bool = True    # heads of translated features apart from targets
    viewpoint_encoding: bool = False   # add a learned encoding of (az, el) to the tokens
    # CPU budget knobs: the video encoder resamples its input crops to this size / number of
    # frames (0 = use the stored crops as they are). Part of the model, so evaluation matches.
    video_input_size: int = 0
    video_input_frames: int = 0


@dataclass(frozen=True)
class LossConfig:
    temperature: float = 0.07
    avsa_weight: float = 1.0
    avc_weight_in_avsa: float = 0.0    # keep an AVC term during phase 2 (0 = paper)
    # AVSA proposals of a translated viewpoint: all_views = every viewpoint of the batch (eq. 8),
    # same_view = the clip's own K viewpoints + the same viewpoint index of the other clips
    # (the authors' code: K - 1 + B proposals).
    avsa_candidates: AvsaCandidates = "all_views"


@dataclass(frozen=True)
class CurriculumConfig:
    pretext: Pretext = "avsa"
    # For pretext=avsa: epochs of AVC before switching to AVSA (0 = no curriculum).
    switch_epoch: int = 50
    epochs: int = 100


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 1e-4
    weight_decay: float = 1e-5
    grad_clip: float = 5.0
    # Autocast precision of the forward pass: auto = bf16 on CUDA (no loss scaling needed) and on
    # CPUs with AMX, fp32 on other CPUs; fp16 uses a GradScaler. The trainer only; the baselines
    # run in fp32.
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    warmup_steps: int = 0
    # Learning rate after warm-up: constant, or cosine (half a cosine from lr down to
    # lr * min_lr_ratio at the last step of the run, over both curriculum phases).
    schedule: Literal["constant", "cosine"] = "constant"
    min_lr_ratio: float = 0.0


@dataclass(frozen=True)
class RunConfig:
    out_dir: str = "runs"
    name: str = ""                 # run folder name, defaults to the experiment name
    seed: int = 0
    init_from: Literal["scratch", "resume"] = "scratch"
    overwrite: bool = False        # replace a finished or interrupted run of the same name
    device: str = "auto"           # auto | cpu | cuda | cuda:N
    log_interval: int = 10         # steps
    ckpt_interval_epochs: int = 1
    max_steps_per_epoch: int = 0   # 0 = full epoch (useful for smoke tests)
    val_max_steps: int = 20        # batches of data.val_split scored at each epoch end, 0 = off


@dataclass(frozen=True)
class TrainConfig:
    experiment: str = "avsa"
    description: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def validate(self) -> None:
        if not self.loss.temperature > 0:
            raise ConfigError(f"loss.temperature must be > 0 (the paper: 0.07), got "
                              f"{self.loss.temperature}")
        if self.curriculum.epochs < 1:
            raise ConfigError(f"curriculum.epochs must be >= 1, got {self.curriculum.epochs}")
        if self.curriculum.switch_epoch > self.curriculum.epochs:
            raise ConfigError(f"curriculum.switch_epoch ({self.curriculum.switch_epoch}) > "
                              f"curriculum.epochs ({self.curriculum.epochs})")
        if self.model.preset == "paper" and self.model.feature_dim != 512:
            raise ConfigError(f"model.feature_dim must be 512 for the paper preset (R(2+1)D-18 "
                              f"output), got {self.model.feature_dim}")
        if not 0.0 <= self.optim.min_lr_ratio <= 1.0:
            raise ConfigError(f"optim.min_lr_ratio must be in [0, 1], got "
                              f"{self.optim.min_lr_ratio}")
        windows = self.data.avts_windows_per_clip
        if self.curriculum.pretext in TEMPORAL_PRETEXTS and self.data.batch_size % windows:
            raise ConfigError(f"data.batch_size ({self.data.batch_size}) must be a multiple of "
                              f"data.avts_windows_per_clip ({windows}) for pretext "
                              f"{self.curriculum.pretext}")
