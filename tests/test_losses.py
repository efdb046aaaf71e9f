"""Contrastive losses against explicit numpy computations on small, chosen embeddings."""

import numpy as np
import pytest
import torch

from trainer.losses import avc_loss, avsa_loss, avts_loss, info_nce

torch.set_num_threads(1)
TAU = 0.07


def cosine(x, y):
    return float(np.dot(x, y) / (np.linalg.norm(x) * np.linalg.norm(y)))


def nce_numpy(query, target, proposals, tau=TAU):
    """-log( exp(h(target, query)/tau) / sum_p exp(h(p, query)/tau) ), written out."""
    numerator = np.exp(cosine(target, query) / tau)
    denominator = sum(np.exp(cosine(p, query) / tau) for p in proposals)
    return -np.log(numerator / denominator)


def test_avc_matches_hand_computation():
    video = np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]])     # not unit: the loss normalises
    audio = np.array([[0.8, 0.6, 0.0], [0.5, 0.5, 0.7]])
    expected_v2a = np.mean([nce_numpy(video[i], audio[i], audio) for i in range(2)])
    expected_a2v = np.mean([nce_numpy(audio[i], video[i], video) for i in range(2)])
    terms = avc_loss(torch.tensor(video), torch.tensor(audio), TAU)
    assert terms.losses["avc_v2a"].item() == pytest.approx(expected_v2a, rel=1e-5)
    assert terms.losses["avc_a2v"].item() == pytest.approx(expected_a2v, rel=1e-5)
    # Clip 0: v0 is closer to a0 (0.8) than to a1 (0.5) -> correct; clip 1: v1 closer to a0
    # (0.6) than a1 (0.5) -> wrong. So the v->a accuracy is 1/2.
    assert terms.accuracies["avc_v2a"].item() == pytest.approx(0.5)


def test_avsa_matches_hand_computation_with_hard_negatives():
    """B = 2 clips, K = 2 viewpoints: each query competes with all 4 viewpoints."""
    rng = np.random.default_rng(0)
    video, audio, video_from_audio, audio_from_video = rng.normal(size=(4, 2, 2, 3))
    flat = lambda x: x.reshape(4, 3)
    expected_a2v = np.mean([nce_numpy(flat(video_from_audio)[q], flat(video)[q], flat(video))
                            for q in range(4)])
    expected_v2a = np.mean([nce_numpy(flat(audio_from_video)[q], flat(audio)[q], flat(audio))
                            for q in range(4)])
    as_t = lambda x: torch.tensor(x)
    terms = avsa_loss(as_t(video), as_t(audio), as_t(video_from_audio), as_t(audio_from_video), TAU)
    assert terms.losses["avsa_a2v"].item() == pytest.approx(expected_a2v, rel=1e-5)
    assert terms.losses["avsa_v2a"].item() == pytest.approx(expected_v2a, rel=1e-5)


def test_avsa_counts_the_other_viewpoints_of_the_same_clip_as_negatives():
    """Clip 0's two viewpoints have the same video embedding, and clip 1 points the opposite
    way: a perfect translation still cannot beat its twin, so the loss is log 2 for clip 0,
    and the in-clip accuracy (argmax over the clip's own viewpoints) sees the ambiguity."""
    e0, e1, e2 = np.eye(3)
    video = np.array([[e0, e0], [-e0, e2]])                     # (B=2, K=2, E=3)
    translated = video.copy()
    audio = np.array([[e1, e2], [e0, -e1]])
    terms = avsa_loss(torch.tensor(video), torch.tensor(audio), torch.tensor(translated),
                      torch.tensor(audio), TAU)
    per_query = [nce_numpy(translated.reshape(4, 3)[q], video.reshape(4, 3)[q], video.reshape(4, 3))
                 for q in range(4)]
    assert per_query[0] == pytest.approx(np.log(2.0), abs=1e-6)   # twin viewpoint, others far
    assert terms.losses["avsa_a2v"].item() == pytest.approx(np.mean(per_query), rel=1e-5)
    # The audio translation is exact and all audio embeddings are distinct -> near-zero loss.
    assert terms.losses["avsa_v2a"].item() < 1e-3
    assert terms.accuracies["avsa_v2a_in_clip"].item() == 1.0


def test_info_nce_positive_index_and_accuracy():
    queries = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), dim=-1)
    proposals = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.6, 0.8]])
    loss, accuracy = info_nce(queries, proposals, torch.tensor([1, 0]), TAU)
    expected = np.mean([nce_numpy(queries[0].numpy(), proposals[1].numpy(), proposals.numpy()),
                        nce_numpy(queries[1].numpy(), proposals[0].numpy(), proposals.numpy())])
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert accuracy.item() == 1.0


def test_avts_needs_two_windows_per_clip_and_uses_them_as_negatives():
    video = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    audio = torch.tensor([[0.9, 0.1], [1.0, 0.0], [0.1, 0.9], [0.0, 1.0]])
    terms = avts_loss(video, audio, torch.tensor([0, 0, 1, 1]), TAU)
    expected = np.mean([nce_numpy(video[i].numpy(), audio[i].numpy(), audio.numpy())
                        for i in range(4)])
    assert terms.losses["avts_v2a"].item() == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="2 windows"):
        avts_loss(video, audio, torch.tensor([0, 0, 1, 2]), TAU)


def test_losses_are_differentiable():
    video = torch.randn(3, 2, 4, requires_grad=True)
    audio = torch.randn(3, 2, 4, requires_grad=True)
    terms = avsa_loss(video, audio, video * 1.1, audio * 0.9, TAU)
    terms.total().backward()
    assert video.grad is not None and torch.isfinite(video.grad).all()


def test_avsa_same_view_candidates_are_the_clips_views_and_the_same_view_of_other_clips():
    """The authors' proposal set, written out: for query (clip i, view k) the proposals are
    the K views of clip i and view k of every other clip, never (j != i, l != k)."""
    rng = np.random.default_rng(3)
    b, k = 3, 2
    video, audio, video_from_audio, audio_from_video = rng.normal(size=(4, b, k, 5))
    expected = []
    for i in range(b):
        for v in range(k):
            proposals = [video[j, l] for j in range(b) for l in range(k) if j == i or l == v]
            expected.append(nce_numpy(video_from_audio[i, v], video[i, v], proposals))
    as_t = lambda x: torch.tensor(x)
    terms = avsa_loss(as_t(video), as_t(audio), as_t(video_from_audio), as_t(audio_from_video),
                      TAU, candidates="same_view")
    assert terms.losses["avsa_a2v"].item() == pytest.approx(np.mean(expected), rel=1e-5)
    everything = avsa_loss(as_t(video), as_t(audio), as_t(video_from_audio),
                           as_t(audio_from_video), TAU)
    assert terms.losses["avsa_a2v"].item() < everything.losses["avsa_a2v"].item()
    with pytest.raises(ValueError, match="candidates"):
        avsa_loss(as_t(video), as_t(audio), as_t(video_from_audio), as_t(audio_from_video),
                  TAU, candidates="some")
