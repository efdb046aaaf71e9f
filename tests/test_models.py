"""Model forward shapes for 1/4/7 audio channels and both presets; translation properties."""

import pytest
import torch

from trainer.config import ModelConfig
from trainer.models import (AVSpatialModel, AudioEncoder, TranslationNetwork, build_model,
                            fuse_batchnorm)

torch.set_num_threads(1)


@pytest.mark.parametrize("channels", [1, 4, 7])
def test_tiny_model_shapes(channels):
    torch.manual_seed(0)
    model = build_model(ModelConfig(preset="tiny", feature_dim=64, embed_dim=16), channels)
    video = torch.rand(2, 3, 3, 4, 32, 32)              # (B, K, 3, T, S, S)
    audio = torch.randn(2, 3, channels, 32, 25)         # (B, K, C, M, F)
    angles = torch.rand(2, 3)
    out = model(video, audio, angles, angles, translate=True)
    assert set(out) == {"video", "audio", "video_from_audio", "audio_from_video"}
    assert all(value.shape == (2, 3, 16) for value in out.values())
    assert set(model(video, audio, angles, angles)) == {"video", "audio"}


@pytest.mark.parametrize("channels", [1, 4, 7])
def test_paper_model_shapes_on_a_short_input(channels):
    """Paper preset (R(2+1)D-18, 512-d) on 4 frames of 32 x 32 and 32 x 25 log-mel."""
    model = build_model(ModelConfig(preset="paper"), channels).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 2, 3, 4, 32, 32), torch.randn(1, 2, channels, 32, 25),
                    torch.zeros(1, 2), torch.zeros(1, 2), translate=True)
        features = model.encode(torch.rand(1, 1, 3, 4, 32, 32), torch.randn(1, 1, channels, 32, 25))
    assert out["video_from_audio"].shape == (1, 2, 128)
    assert [f.shape for f in features] == [(1, 1, 512), (1, 1, 512)]
    conv_layers = [m for m in model.audio_encoder.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(conv_layers) == 9


def test_audio_encoder_handles_the_paper_input_size():
    encoder = AudioEncoder(7, 64, "tiny").eval()
    with torch.no_grad():
        assert encoder(torch.randn(2, 7, 128, 100)).shape == (2, 64)


def test_channels_last_audio_forward_matches_the_plain_layout():
    torch.manual_seed(0)
    encoder = AudioEncoder(7, 64, "tiny").eval()
    audio = torch.randn(3, 7, 128, 100)
    with torch.no_grad():
        fast, plain = encoder(audio), encoder.layers(audio).amax(dim=(2, 3))
    assert torch.allclose(fast, plain, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("preset", ["tiny", "paper"])
def test_batchnorm_fusion_keeps_frozen_outputs(preset):
    torch.manual_seed(0)
    dim = 64 if preset == "tiny" else 512
    model = build_model(ModelConfig(preset=preset, feature_dim=dim), audio_channels=7)
    # Non-trivial running statistics, as after training.
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    model.eval()
    count_norms = lambda: sum(isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                              for m in model.modules())
    video, audio = torch.rand(2, 3, 4, 32, 32), torch.randn(2, 7, 32, 24)
    with torch.no_grad():
        expected = model.video_encoder(video), model.audio_encoder(audio)
        n_before = count_norms()
        fuse_batchnorm(model)
        fused = model.video_encoder(video), model.audio_encoder(audio)
    # Every norm of the tiny preset follows a conv; the paper audio encoder's nine do too.
    assert count_norms() == 0 if preset == "tiny" else count_norms() <= n_before - 9
    for before, after in zip(expected, fused):
        assert torch.allclose(before, after, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="eval mode"):
        fuse_batchnorm(model.train())


def test_translation_is_permutation_equivariant_without_viewpoint_encoding():
    torch.manual_seed(0)
    net = TranslationNetwork(dim=16, depth=2, heads=4, dropout=0.0, viewpoint_encoding=False).eval()
    tokens = torch.randn(2, 4, 16)
    permutation = torch.tensor([2, 0, 3, 1])
    with torch.no_grad():
        torch.testing.assert_close(net(tokens)[:, permutation], net(tokens[:, permutation]))
        # Each output token depends on the other viewpoints (context), not only on its own.
        changed = tokens.clone()
        changed[:, 3] += 1.0
        assert not torch.allclose(net(changed)[:, 0], net(tokens)[:, 0])


def test_viewpoint_encoding_makes_translation_direction_aware():
    torch.manual_seed(0)
    model = AVSpatialModel(4, preset="tiny", feature_dim=32, embed_dim=8, viewpoint_encoding=True)
    net = model.audio_to_video.eval()
    tokens = torch.randn(1, 2, 32)
    with torch.no_grad():
        front = net(tokens, torch.zeros(1, 2), torch.zeros(1, 2))
        turned = net(tokens, torch.full((1, 2), 1.0), torch.zeros(1, 2))
    assert not torch.allclose(front, turned)


def test_video_input_resampling_keeps_output_shape_and_picks_even_frames():
    from trainer.models import VideoEncoder

    encoder = VideoEncoder(feature_dim=32, preset="tiny", input_size=16, input_frames=4)
    video = torch.arange(8, dtype=torch.float32).view(1, 1, 8, 1, 1).expand(2, 3, 8, 32, 32)
    resampled = encoder.resample(video)
    assert resampled.shape == (2, 3, 4, 16, 16)
    assert resampled[0, 0, :, 0, 0].tolist() == [0.0, 2.0, 5.0, 7.0]   # evenly spaced frames
    assert encoder(video).shape == (2, 32)


def test_paper_preset_has_the_authors_shapes_and_parameter_counts():
    """Counted from pedro-morgado/AVSpatialAlignment (models/audio.py, models/video.py,
    criterions/transformers.py, criterions/video2audio_seq.py; the R(2+1)D block from the
    same author's AVID-CMA network_blocks.py, which the AVSA repository imports): conv weights
    without bias, BatchNorm affine, Linear layers with bias."""
    from trainer.models import AudioEncoder, AVSpatialModel, TranslationNetwork, VideoEncoder

    count = lambda module: sum(p.numel() for p in module.parameters())
    assert count(AudioEncoder(4, 512, "paper")) == 4_735_104          # FOA log-mel, 4 channels
    assert count(AudioEncoder(1, 512, "paper")) == 4_725_696          # one beam
    assert count(VideoEncoder(512, "paper")) == 15_379_136
    translation = TranslationNetwork(512, depth=2, heads=1, dropout=0.1, viewpoint_encoding=False)
    assert count(translation) == 6_304_768                          # per direction
    model = AVSpatialModel(4)                                        # the defaults: paper preset
    heads = [model.video_head, model.audio_head, model.video_pred_head, model.audio_pred_head]
    assert len({id(h) for h in heads}) == 4 and sum(map(count, heads)) == 262_656
    assert count(model.audio_to_video) + count(model.video_to_audio) + sum(map(count, heads)) \
        == 12_872_192                                                # their Video2AudioSeq
    with torch.no_grad():
        assert model.audio_encoder(torch.randn(2, 4, 128, 100)).shape == (2, 512)
        assert model.video_encoder(torch.rand(1, 3, 8, 112, 112)).shape == (1, 512)
        out = translation(torch.randn(2, 4, 512))
    assert out.shape == (2, 4, 512) and bool((out >= 0).all())      # layers end with a ReLU
