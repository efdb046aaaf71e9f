"""Two gloo processes on 127.0.0.1: gathered negatives make the multi-rank loss and the
DDP-averaged gradients equal to the single-process ones on the same global batch; the full
training loop runs under DDP (phase switch included)."""

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from pipeline.synth.shard_factory import make_shards
from trainer.losses import avc_loss, avsa_loss

ROOT = Path(__file__).resolve().parents[1]
WORLD_SIZE, GLOBAL_BATCH, K = 2, 6, 3


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ToyModel(nn.Module):
    """Stands in for encoders + translation: inputs (B, K, 5) -> embeddings (B, K, 4)."""

    def __init__(self):
        super().__init__()
        self.video, self.audio = nn.Linear(5, 4), nn.Linear(5, 4)
        self.audio_to_video, self.video_to_audio = nn.Linear(4, 4), nn.Linear(4, 4)

    def forward(self, video_in, audio_in):
        video, audio = self.video(video_in), self.audio(audio_in)
        return video, audio, self.audio_to_video(audio), self.video_to_audio(video)


def global_batch():
    generator = torch.Generator().manual_seed(1)
    return (torch.randn(GLOBAL_BATCH, K, 5, generator=generator),
            torch.randn(GLOBAL_BATCH, K, 5, generator=generator))


def loss_and_grads(model, video_in, audio_in):
    video, audio, video_from_audio, audio_from_video = model(video_in, audio_in)
    terms = avc_loss(video[:, 0], audio[:, 0], 0.07)
    terms.update(avsa_loss(video, audio, video_from_audio, audio_from_video, 0.07))
    loss = terms.total()
    loss.backward()
    return loss.detach(), {k: v.detach() for k, v in terms.losses.items()}


def _worker(rank, port, out_dir, train_argv):
    """One rank: the loss check on its half of the global batch, then the training loop."""
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD_SIZE))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD_SIZE)
    torch.manual_seed(0)
    model = DistributedDataParallel(ToyModel())            # averages gradients over ranks
    video_in, audio_in = global_batch()
    local = slice(rank * GLOBAL_BATCH // WORLD_SIZE, (rank + 1) * GLOBAL_BATCH // WORLD_SIZE)
    loss, terms = loss_and_grads(model, video_in[local], audio_in[local])
    losses = torch.stack([loss, *terms.values()])
    dist.all_reduce(losses)
    if rank == 0:
        torch.save({"losses": losses / WORLD_SIZE,
                    "grads": {n: p.grad for n, p in model.module.named_parameters()}},
                   Path(out_dir) / "ddp_loss.pt")
    from trainer import train                               # joins the same process group
    train.main(train_argv)


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    """Spawn two ranks once (process start-up dominates) for both tests below."""
    root = tmp_path_factory.mktemp("ddp")
    make_shards(root / "shards", n_clips=16, windows_per_clip=2, samples_per_shard=8,
                crop_size=16, n_frames=2, n_mels=16, n_frames_audio=10)
    argv = ["--config", str(ROOT / "configs/experiments/avsa.yaml"), "model.preset=tiny",
            "data.avc_batch_size=0", "data.samples_per_clip=0",
            "model.feature_dim=16", "model.embed_dim=8", "data.batch_size=4",
            "data.num_workers=0", f"data.shards_dir={root / 'shards'}",
            f"run.out_dir={root / 'runs'}", "curriculum.epochs=2",
            "curriculum.switch_epoch=1", "run.max_steps_per_epoch=2"]
    mp.spawn(_worker, args=(free_port(), str(root), argv), nprocs=WORLD_SIZE, join=True)
    return root


def test_gathered_negatives_match_the_single_process_loss(ddp_run):
    ddp = torch.load(ddp_run / "ddp_loss.pt", weights_only=True)
    torch.manual_seed(0)
    model = ToyModel()
    loss, terms = loss_and_grads(model, *global_batch())
    torch.testing.assert_close(ddp["losses"], torch.stack([loss, *terms.values()]))
    for name, parameter in model.named_parameters():
        torch.testing.assert_close(ddp["grads"][name], parameter.grad, msg=name)


@pytest.mark.slow
def test_training_loop_runs_under_ddp(ddp_run):
    checkpoint = torch.load(ddp_run / "runs/avsa/ckpt.pt", weights_only=True)
    assert (checkpoint["epoch"], checkpoint["step"], checkpoint["phase"]) == (2, 4, "avsa")
    assert len(checkpoint["rng_states"]) == WORLD_SIZE
    assert {row["phase"] for row in checkpoint["history"]} == {"avc", "avsa"}
