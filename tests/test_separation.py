"""On/off-screen separation: mixtures, u-net shapes, plain and PIT losses, SDR metrics."""

from __future__ import annotations

import math

import pytest
import torch

from baselines.multisensory.config import SeparationConfig
from baselines.multisensory.model import FusedNet
from baselines.multisensory.separation import (SeparationModel, SeparationUNet,
                                               assign_scales_to_levels, compressed_l1, istft,
                                               make_mixtures, pit_loss, plain_loss,
                                               separation_loss, separation_metrics, sdr_db,
                                               si_sdr_db, stft)


pytestmark = pytest.mark.usefixtures("one_thread")


def _tones(length: int = 4800) -> tuple[torch.Tensor, torch.Tensor]:
    """sin and cos with whole periods: equal power, exactly orthogonal."""
    t = torch.arange(length, dtype=torch.float64)
    phase = 2 * math.pi * 12 * t / length
    return torch.sin(phase)[None], torch.cos(phase)[None]


# ----------------------------------------------------------------------------- metrics

def test_sdr_of_known_signals():
    reference, orthogonal = _tones()
    noise = orthogonal * math.sqrt(0.1)                      # noise power = signal power / 10
    assert sdr_db(reference + noise, reference).item() == pytest.approx(10.0, abs=1e-6)
    assert sdr_db(0.5 * reference, reference).item() == pytest.approx(20 * math.log10(2), abs=1e-6)
    # SI-SDR ignores the gain of the estimate: only the orthogonal part counts.
    estimate = 0.5 * reference + 0.5 * noise
    assert si_sdr_db(estimate, reference).item() == pytest.approx(10.0, abs=1e-6)
    assert si_sdr_db(3.0 * reference, reference).item() > 60.0
    assert si_sdr_db(reference + 0.7, reference).item() > 60.0   # zero-mean: offsets ignored


def test_separation_metrics_score_the_on_screen_output_and_the_best_permutation():
    on, off = _tones()
    mix = on + off
    perfect = separation_metrics(torch.stack([on, off], dim=1), on, off, mix)
    swapped = separation_metrics(torch.stack([off, on], dim=1), on, off, mix)
    assert perfect["sdr_mix_on"].item() == pytest.approx(0.0, abs=1e-6)    # 0 dB mixture
    assert perfect["si_sdri_on"].item() > 60.0 and perfect["sdri_pit"].item() > 60.0
    assert swapped["si_sdri_on"].item() < -60.0                  # wrong source on screen
    assert swapped["si_sdri_pit"].item() > 60.0                  # PIT forgives the swap
    halves = separation_metrics(torch.stack([0.5 * mix, 0.5 * mix], dim=1), on, off, mix)
    assert halves["sdri_on"].item() == pytest.approx(20 * math.log10(2) - 10 * math.log10(2),
                                                     abs=1e-5)   # 3 dB for halving the mixture
    assert halves["si_sdri_on"].item() == pytest.approx(0.0, abs=1e-5)


# ----------------------------------------------------------------------------- losses

def test_compressed_l1_hand_case():
    ones, zeros = torch.ones(1, 3, 4), torch.zeros(1, 3, 4)
    assert compressed_l1(ones, zeros, 1.0).item() == pytest.approx(1.0)
    assert compressed_l1(4 * ones, ones, 0.5).item() == pytest.approx(1.0, abs=1e-4)


def test_pit_picks_the_better_permutation():
    torch.manual_seed(0)
    target = torch.rand(3, 2, 5, 7)
    prediction = target.clone()
    prediction[1] = target[1].flip(0)                          # example 1: outputs swapped
    prediction[2, 0] += 0.2                                    # example 2: right order, noisy
    loss, swapped = pit_loss(prediction, target, 1.0)
    assert swapped.tolist() == [False, True, False]
    assert loss[0].item() == pytest.approx(0.0) and loss[1].item() == pytest.approx(0.0)
    assert loss[2].item() == pytest.approx(0.2, abs=1e-6)
    plain = plain_loss(prediction, target, 1.0)
    assert plain[1].item() > 0.1                               # the plain loss punishes the swap
    torch.testing.assert_close(separation_loss("pit", prediction, target, 1.0), loss)
    with pytest.raises(ValueError):
        separation_loss("other", prediction, target, 1.0)


# ----------------------------------------------------------------------------- data and model

def test_mixtures_pair_each_clip_with_the_next_at_0_db():
    audio = torch.randn(3, 4, 100) * torch.tensor([1.0, 5.0, 0.1])[:, None, None]
    parts = make_mixtures(audio)
    rms = parts["on"][:, 0].pow(2).mean(-1).sqrt()
    torch.testing.assert_close(rms, torch.ones(3))
    torch.testing.assert_close(parts["off"][0], parts["on"][1])
    torch.testing.assert_close(parts["off"][2], parts["on"][0])
    torch.testing.assert_close(parts["mix"], parts["on"] + parts["off"])
    with pytest.raises(ValueError):
        make_mixtures(audio[:1])


def test_scales_go_to_the_level_with_the_closest_rate():
    assert assign_scales_to_levels([4, 2, 1], [47, 24, 12, 6, 3]) == [4, 4, 4]
    assert assign_scales_to_levels([32, 16, 8], [64, 32, 16, 8, 4]) == [1, 2, 3]


def test_stft_round_trip():
    wave = torch.randn(2, 1200)
    spec = stft(wave, 64, 16)
    assert spec.shape == (2, 33, 76)
    torch.testing.assert_close(istft(spec, 64, 16, 1200), wave, atol=1e-5, rtol=1e-5)


def test_unet_shapes_with_and_without_video_features():
    x = torch.randn(2, 1, 33, 76)
    plain = SeparationUNet([8, 16, 16])
    assert plain(x).shape == (2, 2, 33, 76)
    assert plain.level_lengths(76) == [38, 19, 10]
    conditioned = SeparationUNet([8, 16, 16], extra_channels=[0, 0, 5])
    assert conditioned(x, [None, None, torch.randn(2, 5, 10)]).shape == (2, 2, 33, 76)
    with pytest.raises(ValueError, match="video channels"):
        conditioned(x)


def test_audio_visual_model_outputs_and_gradients():
    torch.manual_seed(0)
    cfg = SeparationConfig(n_fft=64, hop_length=16, unet_widths=(8, 16))
    fused = FusedNet(1, "tiny")
    model = SeparationModel(cfg, 1200, fused, probe=(8, 32))
    assert model.scale_levels == [1, 1, 1]                    # 4, 2, 1 steps -> 38 or 19 steps
    assert model.loss_kind == "plain" and SeparationModel(cfg, 1200).loss_kind == "pit"
    parts = make_mixtures(torch.randn(2, 1, 1200))
    out = model(parts["mix"], torch.rand(2, 3, 8, 32, 32))
    assert out["masks"].shape == out["magnitudes"].shape == (2, 2, 33, 76)
    assert out["waves"].shape == (2, 2, 1200)
    assert ((out["masks"] >= 0) & (out["masks"] <= 1)).all()
    target = model.target_magnitudes(parts["on"], parts["off"])
    separation_loss("plain", out["magnitudes"], target, 0.3).mean().backward()
    assert fused.head.weight.grad is None                     # the head is not on this path
    assert fused.video[0].weight.grad is not None             # video features reach the u-net
    # Masks of 1 would give back the mixture: the output waves are consistent with the masks.
    full = istft(out["mix_spec"], 64, 16, 1200)
    torch.testing.assert_close(full, parts["mix"][:, 0], atol=1e-4, rtol=1e-4)
    frozen = SeparationModel(cfg, 1200, FusedNet(1, "tiny"), probe=(8, 32), freeze_fused=True)
    frozen.train()
    assert not frozen.fused.training and not any(p.requires_grad for p in frozen.fused.parameters())
    with pytest.raises(ValueError, match="needs the video"):
        model(parts["mix"])
