"""Contrastive losses (Morgado et al. 2020, eqs. 6-8), with negatives gathered across ranks.

``InfoNCE(x, x_t, P) = -log( exp(h(x_t, x)/tau) / sum_{x_p in P} exp(h(x_p, x)/tau) )`` where
h is the cosine similarity of the projected embeddings and tau the temperature (0.07).
Each function takes this rank's embeddings, gathers the *proposals* from all ranks with
:func:`trainer.distributed.gather_with_grad` (queries stay local) and returns the mean over
this rank's queries. Averaged over ranks (as DDP averages gradients) this is exactly the
single-process loss on the global batch.

- AVC (eq. 6), one viewpoint per clip: video query v_i vs audio proposals {a_j} and audio
  query a_i vs video proposals {v_j}, j over all clips of the global batch.
- AVSA (eq. 8): the translated feature of viewpoint k of clip i must pick the encoder feature
  of the same viewpoint among all B*K viewpoints of the global batch: the other K-1
  viewpoints of clip i are the hard negatives. Terms: ``avsa_a2v`` (query v̄ = head(g_a2v(a)),
  proposals head(v)) and ``avsa_v2a`` (query ā = head(g_v2a(v)), proposals head(a)).
  ``candidates="same_view"`` restricts the proposals to the authors' set: the K viewpoints of
  clip i and viewpoint k of every other clip (K - 1 + B proposals instead of B*K).
- AVTS: the AVC loss on a batch whose clips each bring >= 2 windows (the loader groups them),
  so the proposals include other moments of the same clip (the AVTS proposal set).
- AVC transf. / AVTS transf. (Morgado et al.'s Table 1 baselines with translation networks,
  the authors' ``contrast: avc``): K viewpoints per clip are encoded and translated, the
  translated and target embeddings are max-pooled over the K viewpoints, and the pooled pairs
  go through the AVC (or, on AVTS batches, the AVTS) loss: the translation networks train, but
  nothing asks them to tell one viewpoint from another.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import get_args

import torch
import torch.nn.functional as F

from trainer import distributed
from trainer.config import AvsaCandidates

#: Proposal sets of the AVSA loss (``loss.avsa_candidates``).
AVSA_CANDIDATES = get_args(AvsaCandidates)


@dataclass
class LossTerms:
    """Named loss terms (scalar tensors with grad) and top-1 accuracies (detached)."""

    losses: dict[str, torch.Tensor] = field(default_factory=dict)
    accuracies: dict[str, torch.Tensor] = field(default_factory=dict)

    def update(self, other: "LossTerms", weight: float = 1.0) -> None:
        self.losses.update({k: v * weight for k, v in other.losses.items()})
        self.accuracies.update(other.accuracies)

    def total(self) -> torch.Tensor:
        return torch.stack(list(self.losses.values())).sum()


def info_nce(queries: torch.Tensor, proposals: torch.Tensor, positive_index: torch.Tensor,
             temperature: float, candidate_mask: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean InfoNCE of L2-normalised ``queries`` (Q, E) against ``proposals`` (P, E);
    ``positive_index`` (Q,) is the row of each query's positive; ``candidate_mask`` (Q, P)
    bool, when given, keeps only the proposals marked True (the positive must be one).
    Returns (loss, accuracy)."""
    logits = queries @ proposals.t() / temperature                          # (Q, P)
    if candidate_mask is not None:
        logits = logits.masked_fill(~candidate_mask, float("-inf"))
    loss = F.cross_entropy(logits, positive_index)
    accuracy = (logits.detach().argmax(dim=1) == positive_index).float().mean()
    return loss, accuracy


def _gathered_targets(n_local: int, device: torch.device) -> torch.Tensor:
    """Row of each local query's positive in the gathered proposals (this rank's block)."""
    return distributed.rank() * n_local + torch.arange(n_local, device=device)


def cross_modal_nce(video: torch.Tensor, audio: torch.Tensor, temperature: float,
                    name: str) -> LossTerms:
    """Both directions of InfoNCE between video (N, E) and audio (N, E) embeddings, where
    row i of each is a positive pair and every other row of the global batch a negative."""
    video = F.normalize(video.float(), dim=-1)
    audio = F.normalize(audio.float(), dim=-1)
    targets = _gathered_targets(video.shape[0], video.device)
    all_video = distributed.gather_with_grad(video)
    all_audio = distributed.gather_with_grad(audio)
    loss_v2a, acc_v2a = info_nce(video, all_audio, targets, temperature)
    loss_a2v, acc_a2v = info_nce(audio, all_video, targets, temperature)
    return LossTerms({f"{name}_v2a": loss_v2a, f"{name}_a2v": loss_a2v},
                     {f"{name}_v2a": acc_v2a, f"{name}_a2v": acc_a2v})


def avc_loss(video: torch.Tensor, audio: torch.Tensor, temperature: float) -> LossTerms:
    """AVC (eq. 6). video, audio: (B, E) embeddings, one viewpoint per clip."""
    return cross_modal_nce(video, audio, temperature, "avc")


def avts_loss(video: torch.Tensor, audio: torch.Tensor, clip_index: torch.Tensor,
              temperature: float) -> LossTerms:
    """AVTS. video, audio: (B, E) embeddings of B windows; ``clip_index`` (B,) labels the
    windows of one clip, and each clip must appear at least twice (same-clip negatives)."""
    _, counts = torch.unique(clip_index, return_counts=True)
    if int(counts.min()) < 2:
        raise ValueError("AVTS needs >= 2 windows of every clip in the batch; got clip counts "
                         f"{counts.tolist()} (build the loader with windows_per_clip >= 2)")
    return cross_modal_nce(video, audio, temperature, "avts")


def pooled_translation_loss(video: torch.Tensor, audio: torch.Tensor,
                            video_from_audio: torch.Tensor, audio_from_video: torch.Tensor,
                            temperature: float, name: str,
                            clip_index: torch.Tensor | None = None) -> LossTerms:
    """AVC transf. (``name="avc"``) or AVTS transf. (``"avts"``, with ``clip_index``). All
    inputs (B, K, E): the translated embeddings, max-pooled over K, are the queries of the
    pooled targets of the other modality: ``<name>_v2a`` (head(g_v2a(v)) vs head(a)) and
    ``<name>_a2v`` (head(g_a2v(a)) vs head(v)); every other clip (or window) of the global
    batch is a negative."""
    if clip_index is not None:
        _, counts = torch.unique(clip_index, return_counts=True)
        if int(counts.min()) < 2:
            raise ValueError(f"{name} needs >= 2 windows of every clip in the batch; got clip "
                             f"counts {counts.tolist()}")
    pool = lambda x: F.normalize(x.float().amax(dim=1), dim=-1)
    targets = _gathered_targets(video.shape[0], video.device)
    loss_v2a, acc_v2a = info_nce(pool(audio_from_video), distributed.gather_with_grad(pool(audio)),
                                 targets, temperature)
    loss_a2v, acc_a2v = info_nce(pool(video_from_audio), distributed.gather_with_grad(pool(video)),
                                 targets, temperature)
    return LossTerms({f"{name}_v2a": loss_v2a, f"{name}_a2v": loss_a2v},
                     {f"{name}_v2a": acc_v2a, f"{name}_a2v": acc_a2v})


def avsa_loss(video: torch.Tensor, audio: torch.Tensor, video_from_audio: torch.Tensor,
              audio_from_video: torch.Tensor, temperature: float,
              candidates: AvsaCandidates = "all_views") -> LossTerms:
    """AVSA (eq. 8). All inputs (B, K, E): encoder embeddings ``video`` = head(v),
    ``audio`` = head(a) and translated ``video_from_audio`` = head(g_a2v(a)),
    ``audio_from_video`` = head(g_v2a(v)). Queries are the B*K translated embeddings; the
    positive is the same clip and viewpoint. ``candidates``: ``all_views`` = all B*K viewpoints
    of the global batch are proposals (eq. 8); ``same_view`` = only the clip's own K viewpoints
    and the same viewpoint index k of the other clips (the authors' code)."""
    if candidates not in AVSA_CANDIDATES:
        raise ValueError(f"candidates must be one of {AVSA_CANDIDATES}, got {candidates!r}")
    b, k, e = video.shape
    flat = lambda x: F.normalize(x.float().reshape(b * k, e), dim=-1)
    targets = _gathered_targets(b * k, video.device)
    all_video = distributed.gather_with_grad(flat(video))
    all_audio = distributed.gather_with_grad(flat(audio))
    mask = (None if candidates == "all_views"
            else _same_view_mask(targets, all_video.shape[0], k))
    loss_a2v, acc_a2v = info_nce(flat(video_from_audio), all_video, targets, temperature, mask)
    loss_v2a, acc_v2a = info_nce(flat(audio_from_video), all_audio, targets, temperature, mask)
    return LossTerms({"avsa_a2v": loss_a2v, "avsa_v2a": loss_v2a},
                     {"avsa_a2v": acc_a2v, "avsa_v2a": acc_v2a,
                      "avsa_a2v_in_clip": in_clip_accuracy(video_from_audio, video),
                      "avsa_v2a_in_clip": in_clip_accuracy(audio_from_video, audio)})


def _same_view_mask(targets: torch.Tensor, n_proposals: int, k: int) -> torch.Tensor:
    """(Q, P) bool: proposal p is a candidate of query q when it belongs to q's clip or shows
    q's viewpoint index (rows of the flattened (B, K) layout, clip = row // K, view = row % K)."""
    proposals = torch.arange(n_proposals, device=targets.device)
    same_clip = (proposals[None, :] // k) == (targets[:, None] // k)
    same_view = (proposals[None, :] % k) == (targets[:, None] % k)
    return same_clip | same_view


@torch.no_grad()
def in_clip_accuracy(queries: torch.Tensor, proposals: torch.Tensor) -> torch.Tensor:
    """Top-1 accuracy among the K viewpoints of each clip only (chance 1/K): queries and
    proposals (B, K, E). The spatial part of AVSA, without the easy other-clip negatives."""
    similarity = torch.einsum("bke,ble->bkl", F.normalize(queries.float(), dim=-1),
                              F.normalize(proposals.float(), dim=-1))
    correct = similarity.argmax(dim=-1) == torch.arange(queries.shape[1], device=queries.device)
    return correct.float().mean()
