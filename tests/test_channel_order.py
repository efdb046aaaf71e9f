"""Channel order of 4-channel files: what ffmpeg's layout tags do to our decoder and to a 4.0
remix (the authors' loader), the declared ``channel_order`` (manifest, YT-360 importer), and the
detector that scores channel orders against known source directions. docs/channel_order.md."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from pipeline.channel_order import (
    ALL_CHANNEL_ORDERS,
    compose_channel_orders,
    cross_power,
    intensity_for_order,
    score_channel_orders,
)
from pipeline.channel_order import main as channel_order_main
from pipeline.clip_samples import _BlockAudio
from pipeline.decode import decode_audio, reorder_channels
from pipeline.errors import ManifestError
from pipeline.features import AudioFeatureConfig, doa_from_intensity
from pipeline.ffmpeg_bin import ffmpeg_exe, probe
from pipeline.foa import encode_plane_wave
from pipeline.importers import main as importers_main
from pipeline.importers import parse_yt360_channel_order
from pipeline.manifest import Clip, read_manifest, write_manifest
from pipeline.preprocess_config import PreprocessConfig
from pipeline.spatial import vector_to_direction
from pipeline.synth.write import write_tagged_audio
from pipeline.synth.shard_factory import make_shards

WRITE_RATE = 48_000
DECODE_RATE = 24_000
TONES_HZ = (500.0, 700.0, 1100.0, 1300.0)  # one per channel in the tone tests
AMBIX = "WYZX"

# (suffix, codec, layout written, layout ffmpeg reports when reading the file back)
LAYOUT_CASES = [
    (".m4a", "aac", "4.0", "4.0"),
    (".mp4", "aac", "4.0", "4.0"),
    (".m4a", "aac", "quad", "quad"),
    (".mp4", "aac", "quad", "quad"),
    (".wav", "pcm_f32le", "4.0", "4.0"),
    (".wav", "pcm_f32le", "quad", "quad"),
    (".mkv", "pcm_f32le", "quad", "4.0"),     # Matroska stores no layout for PCM
    (".mkv", "pcm_f32le", "4C", "4.0"),       # unspecified order: ffmpeg guesses its default, 4.0
    (".wav", "untagged", None, "4.0"),        # plain WAVE header, no channel mask
]


def write_audio(path: Path, channels: np.ndarray, codec: str, layout: str | None) -> Path:
    """Write ``(4, n)`` float audio at WRITE_RATE; ``codec="untagged"`` writes a plain 16-bit
    WAVE file without a channel mask (what ffmpeg reads as "4 channels", order unknown)."""
    return write_tagged_audio(path, np.asarray(channels, dtype=np.float32).T, WRITE_RATE, codec,
                              layout)


def tones_per_channel(duration_s: float = 0.5) -> np.ndarray:
    """``(4, n)``: channel k holds a 0.25-amplitude sine at TONES_HZ[k]."""
    t = np.arange(int(duration_s * WRITE_RATE)) / WRITE_RATE
    return 0.25 * np.sin(2 * np.pi * np.outer(TONES_HZ, t))


def tone_amplitudes(signals: np.ndarray, sample_rate: int) -> np.ndarray:
    """``(n_out, 4)`` amplitude of each of TONES_HZ in each channel, over the middle half."""
    n = signals.shape[1]
    segment = np.asarray(signals, dtype=np.float64)[:, n // 4: 3 * n // 4]
    window = np.hanning(segment.shape[1])
    t = np.arange(segment.shape[1]) / sample_rate
    basis = np.exp(-2j * np.pi * np.outer(TONES_HZ, t)) * window
    return 2 * np.abs(segment @ basis.T) / window.sum()


def plane_wave(azimuth_deg: float, elevation_deg: float, duration_s: float = 0.5,
               seed: int = 0) -> np.ndarray:
    """``(4, n)`` ambiX plane wave at WRITE_RATE from (az, el) in degrees (az + = left), of a
    few tones AAC codes faithfully."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(duration_s * WRITE_RATE)) / WRITE_RATE
    signal = sum(0.1 * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
                 for f in (310.0, 530.0, 890.0, 1470.0))
    return encode_plane_wave(signal, np.deg2rad(azimuth_deg), np.deg2rad(elevation_deg))


def angle_deg(az1, el1, az2, el2) -> float:
    """Great-circle angle between two directions given in radians, degrees."""
    cos = (np.sin(el1) * np.sin(el2) + np.cos(el1) * np.cos(el2) * np.cos(az1 - az2))
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


def stored_as(ambix: np.ndarray, order: str) -> np.ndarray:
    """The channels of ambiX audio rearranged so that channel k holds ``order[k]``."""
    return np.asarray(ambix)[[AMBIX.index(letter) for letter in order]]


# ---------------------------------------------------------------------------------------------
# layout tags: our decoder never moves a channel; a 4.0 remix does for quad


@pytest.mark.parametrize("suffix,codec,layout,reported", LAYOUT_CASES,
                         ids=[f"{c[1]}{c[0]}-{c[2]}" for c in LAYOUT_CASES])
def test_decoder_keeps_every_channel_in_file_order(tmp_path, suffix, codec, layout, reported):
    path = write_audio(tmp_path / f"tones{suffix}", tones_per_channel(), codec, layout)
    assert probe(path).audio.channel_layout == reported
    amplitudes = tone_amplitudes(decode_audio(path, DECODE_RATE), DECODE_RATE)
    # channel k carries tone k (lossy AAC: within 10 %) and no other tone above 2 %
    assert np.allclose(np.diag(amplitudes), 0.25, rtol=0.1)
    assert np.all(amplitudes[~np.eye(4, dtype=bool)] < 0.02 * 0.25)


@pytest.mark.parametrize("suffix,codec,layout,reported", LAYOUT_CASES,
                         ids=[f"{c[1]}{c[0]}-{c[2]}" for c in LAYOUT_CASES])
def test_plane_wave_direction_survives_every_layout(tmp_path, suffix, codec, layout, reported):
    azimuth_deg, elevation_deg = 60.0, 30.0  # x, y, z all different: any permutation moves it
    path = write_audio(tmp_path / f"wave{suffix}", plane_wave(azimuth_deg, elevation_deg),
                       codec, layout)
    azimuth, elevation = doa_from_intensity(decode_audio(path, DECODE_RATE))
    assert angle_deg(azimuth, elevation, np.deg2rad(azimuth_deg), np.deg2rad(elevation_deg)) < 3.0


def remix_to_four_point_zero(path: Path) -> np.ndarray:
    """``(4, n)`` float32 after ffmpeg converts the stream to the 4.0 layout (libswresample), as
    PyAV's ``AudioResampler(layout="4.0")`` in the authors' loader does."""
    cmd = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-i", str(path),
           "-af", "aformat=channel_layouts=4.0", "-ar", str(DECODE_RATE), "-f", "f32le",
           "-c:a", "pcm_f32le", "pipe:"]
    raw = subprocess.run(cmd, check=True, capture_output=True).stdout
    return np.frombuffer(raw, dtype="<f4").reshape(-1, 4).T


def test_four_point_zero_remix_keeps_four_point_zero_and_folds_quad(tmp_path):
    tagged_40 = write_audio(tmp_path / "a.m4a", tones_per_channel(), "aac", "4.0")
    tagged_quad = write_audio(tmp_path / "b.m4a", tones_per_channel(), "aac", "quad")
    same = tone_amplitudes(remix_to_four_point_zero(tagged_40), DECODE_RATE)
    assert np.allclose(same, 0.25 * np.eye(4), atol=0.025)
    # quad FL FR BL BR -> 4.0 FL FR FC BC: FC silent, BC = (BL + BR) / sqrt(2): two channels lost
    folded = tone_amplitudes(remix_to_four_point_zero(tagged_quad), DECODE_RATE)
    expected = 0.25 * np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0],
                                [0, 0, 1 / np.sqrt(2), 1 / np.sqrt(2)]])
    assert np.allclose(folded, expected, atol=0.025)


# ---------------------------------------------------------------------------------------------
# the declared channel order


def test_reorder_channels_is_the_declared_permutation():
    x = np.arange(4)[:, None] * np.ones((1, 3))
    assert reorder_channels(x, "WXZY", "ambix")[:, 0].tolist() == [0, 3, 2, 1]
    assert reorder_channels(x, "XYWZ", "ambix")[:, 0].tolist() == [2, 1, 3, 0]
    assert reorder_channels(x, "WYZX", "fuma")[:, 0].tolist() == [0, 3, 1, 2]   # to W X Y Z
    assert reorder_channels(x, None, "ambix") is x
    with pytest.raises(ValueError, match="W, X, Y, Z each once"):
        reorder_channels(x, "WWYZ", "ambix")


def test_left_source_with_y_and_x_swapped_decodes_to_the_left(tmp_path):
    path = write_audio(tmp_path / "swapped.wav", stored_as(plane_wave(90.0, 0.0), "WXZY"),
                       "pcm_f32le", "4.0")
    azimuth, elevation = doa_from_intensity(decode_audio(path, DECODE_RATE, channel_order="WXZY"))
    assert angle_deg(azimuth, elevation, np.pi / 2, 0.0) < 1.0
    azimuth, elevation = doa_from_intensity(decode_audio(path, DECODE_RATE))  # order not undone
    assert angle_deg(azimuth, elevation, 0.0, 0.0) < 1.0                      # heard in front


def test_note_order_is_undone_in_an_aac_file(tmp_path):
    path = write_audio(tmp_path / "note.m4a", stored_as(plane_wave(-120.0, 25.0), "XYWZ"),
                       "aac", "4.0")
    azimuth, elevation = doa_from_intensity(decode_audio(path, DECODE_RATE, channel_order="XYWZ"))
    assert angle_deg(azimuth, elevation, np.deg2rad(-120.0), np.deg2rad(25.0)) < 3.0


def make_clip(**overrides) -> Clip:
    fields = dict(clip_id="c-0", video_path="c.wav", audio_path=None, duration_s=1.0, fps=16.0,
                  width=64, height=32, sample_rate=WRITE_RATE, audio_channels=4,
                  ambisonics="ambix", split="train")
    return Clip(**{**fields, **overrides})


def test_manifest_carries_channel_order_and_old_records_still_load(tmp_path):
    path = write_manifest(tmp_path / "m.jsonl", [make_clip(channel_order="XYWZ"),
                                                 make_clip(clip_id="c-1")])
    first, second = read_manifest(path)
    assert first.channel_order == "XYWZ" and second.channel_order is None
    old = make_clip().to_dict()
    del old["channel_order"]                                    # a manifest from before the field
    (tmp_path / "old.jsonl").write_text(json.dumps(old) + "\n")
    assert read_manifest(tmp_path / "old.jsonl")[0].channel_order is None
    with pytest.raises(ManifestError, match="channel_order expected the letters"):
        make_clip(channel_order="WYZ")


def test_preprocessing_audio_undoes_the_manifest_order(tmp_path):
    path = write_audio(tmp_path / "c.wav", stored_as(plane_wave(90.0, 0.0, duration_s=1.0), "WXZY"),
                       "pcm_f32le", "4.0")
    clip = make_clip(channel_order="WXZY")
    window = _BlockAudio(path, probe(path), clip, PreprocessConfig()).window(0.0)
    azimuth, elevation = doa_from_intensity(window)
    assert angle_deg(azimuth, elevation, np.pi / 2, 0.0) < 1.0


def make_yt360_root(root: Path) -> Path:
    """One YT-360 clip: a 64x32 video and a 4.0-tagged AAC .m4a, plus the id lists."""
    (root / "video").mkdir(parents=True)
    (root / "audio").mkdir()
    subprocess.run([ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-f",
                    "lavfi", "-i", "testsrc=size=64x32:rate=16:duration=0.5", "-c:v", "mpeg4",
                    str(root / "video" / "vid-0.mp4")], check=True, capture_output=True)
    write_audio(root / "audio" / "vid-0.m4a", plane_wave(0.0, 0.0), "aac", "4.0")
    (root / "clips.txt").write_text("vid 0\n")
    (root / "train.txt").write_text("vid\n")
    (root / "test.txt").write_text("")
    return root


def test_yt360_importer_states_its_channel_order(tmp_path, capsys):
    root = make_yt360_root(tmp_path / "yt360")
    common = ["yt360", "--root", str(root), "--clip-list", str(root / "clips.txt"),
              "--train-ids", str(root / "train.txt"), "--test-ids", str(root / "test.txt")]
    assert importers_main(common + ["--out", str(tmp_path / "default.jsonl")]) == 0
    assert read_manifest(tmp_path / "default.jsonl")[0].channel_order == AMBIX
    assert importers_main(common + ["--channel-order", "yt360-note",
                                    "--out", str(tmp_path / "note.jsonl")]) == 0
    assert read_manifest(tmp_path / "note.jsonl")[0].channel_order == "XYWZ"
    assert parse_yt360_channel_order("wxzy") == "WXZY"
    with pytest.raises(SystemExit) as exit_info:
        importers_main(common + ["--channel-order", "WXYY", "--out", str(tmp_path / "x.jsonl")])
    assert exit_info.value.code == 2
    assert "W, X, Y, Z each once" in capsys.readouterr().err


def test_the_folder_importer_takes_a_channel_order(tmp_path):
    """The order make channel-order recommends can be given to every importer of 360 clips."""
    from pipeline.synth.cli import generate_videos
    from pipeline.synth.scenes import SceneConfig

    generate_videos(tmp_path / "clips", n_train=1, n_test=1, seed=0,
                    scene=SceneConfig(width=64, height=32, duration_s=1.0), workers=1)
    out = tmp_path / "folder.jsonl"
    assert importers_main(["folder", "--folder", str(tmp_path / "clips"), "--channel-order",
                           "yzwx", "--workers", "1", "--out", str(out)]) == 0
    assert {clip.channel_order for clip in read_manifest(out)} == {"YZWX"}


# ---------------------------------------------------------------------------------------------
# the detector


def permuted_windows(true_order: str, n_windows: int = 16, seed: int = 1,
                     max_azimuth: float = np.pi, max_elevation: float = 1.0):
    """Noisy plane-wave windows (0.25 s at 24 kHz) from random directions (azimuth within
    ``max_azimuth``, elevation within ``max_elevation`` of the front, rad) stored so that
    channel k holds ``true_order[k]``, with per window the source and one distractor."""
    rng = np.random.default_rng(seed)
    n = DECODE_RATE // 4
    windows, directions = [], []
    for _ in range(n_windows):
        azimuth = rng.uniform(-max_azimuth, max_azimuth)
        elevation = rng.uniform(-max_elevation, max_elevation)
        ambix = encode_plane_wave(rng.standard_normal(n), azimuth, elevation)
        ambix = ambix + 0.2 * rng.standard_normal((4, n))              # diffuse-ish noise
        windows.append(stored_as(ambix, true_order))
        directions.append(np.array([[azimuth, elevation],
                                    [rng.uniform(-np.pi, np.pi), rng.uniform(-0.5, 0.5)]]))
    return np.stack(windows).astype(np.float32), directions


@pytest.mark.parametrize("true_order", ["WYZX", "WXZY", "WYXZ", "WZYX", "XYWZ"])
def test_detector_finds_the_permutation(true_order):
    windows, directions = permuted_windows(true_order)
    scores = score_channel_orders(windows, directions)
    assert scores.best == true_order
    assert scores.margin > 0.1
    assert scores.n_windows == len(windows) and len(scores.orders) == len(ALL_CHANNEL_ORDERS)
    assert scores.median_error_deg[0] < 15.0


@pytest.mark.parametrize("true_order", ["YZWX", "WYZX"])
def test_the_energy_test_tells_w_from_a_dipole_when_detections_are_off(true_order):
    """Sources within 40 degrees of the front, one detection per window 3-8 degrees off the
    truth (the same bias through a set): taking X for W moves the intensity direction by little
    there (X is W cos(azimuth) cos(elevation)), and in 1 of these 12 sets direction alone ranks
    a W-dipole swap first. The W test (the dipoles' energy over W's is constant only for the
    true W) is decisive in every set and puts the true order first in all 12."""
    wrong_by_direction = 0
    for seed in range(12):
        windows, directions = permuted_windows(true_order, n_windows=24, seed=seed,
                                               max_azimuth=np.radians(40),
                                               max_elevation=np.radians(20))
        rng = np.random.default_rng(seed)
        off, angle = np.radians(rng.uniform(3.0, 8.0)), rng.uniform(0.0, 2 * np.pi)
        biased = [dirs[:1] + [off * np.cos(angle), off * np.sin(angle)] for dirs in directions]
        scores = score_channel_orders(windows, biased)
        assert scores.w_channel == true_order.index("W"), scores.w_spread_db
        assert scores.best == true_order
        wrong_by_direction += scores.best_by_direction != true_order
    assert wrong_by_direction >= 1                     # the case the W test is there for


def test_the_energy_test_says_when_it_cannot_decide():
    """Sources within 15 degrees of the front: every wrong W is almost as steady as the true
    one; the test names no W channel rather than guess."""
    windows, directions = permuted_windows("WYZX", n_windows=24, seed=0,
                                           max_azimuth=np.radians(15),
                                           max_elevation=np.radians(10))
    assert score_channel_orders(windows, directions).w_channel is None


def test_detector_intensity_is_doa_from_intensity():
    windows, _ = permuted_windows("XYWZ", n_windows=2)
    cfg = AudioFeatureConfig()
    power = cross_power(windows, cfg)
    for window, window_power in zip(windows, power):
        got = vector_to_direction(intensity_for_order(window_power, "XYWZ"))
        want = doa_from_intensity(reorder_channels(window, "XYWZ"), cfg)
        assert np.allclose(got, want, atol=1e-6)


def test_compose_gives_the_files_order():
    file_order = "ZWXY"
    for declared in ("WYZX", "XYWZ", "WXZY"):
        # decoding with `declared` gives ambiX slot j = file channel declared.index(AMBIX[j])
        found = "".join(file_order[declared.index(letter)] for letter in AMBIX)
        assert compose_channel_orders(declared, found) == file_order


def test_cli_reports_permuted_shards(tmp_path, capsys):
    import h5py

    info = make_shards(tmp_path / "shards", n_clips=6, windows_per_clip=2, n_audio_samples=2400,
                       compression=None)
    assert channel_order_main(["--shards", str(tmp_path / "shards")]) == 0
    assert "best: WYZX" in capsys.readouterr().out
    for path in info["paths"]:                   # store the audio as X, Y, W, Z (sizes unchanged)
        with h5py.File(path, "r+") as h5:
            h5["foa_acn_sn3d"][...] = np.stack([stored_as(w, "XYWZ") for w in h5["foa_acn_sn3d"][()]])
    assert channel_order_main(["--shards", str(tmp_path / "shards")]) == 0
    out = capsys.readouterr().out
    assert "best: XYWZ" in out and "--channel-order XYWZ" in out
    assert channel_order_main(["--shards", str(tmp_path / "missing")]) == 2
    assert "error:" in capsys.readouterr().err


def test_cli_reads_the_declared_order_from_the_manifest(tmp_path, capsys):
    """Shards made from a manifest that declared XYWZ hold ambiX audio decoded with XYWZ: the
    tool says so (not "WYZX") and, when the decoded audio is in fact permuted, composes the
    order to re-import with from the declared one."""
    import h5py

    from pipeline.manifest import Clip, write_manifest

    info = make_shards(tmp_path / "shards", n_clips=6, windows_per_clip=2, n_audio_samples=2400,
                       compression=None)
    clip_ids = sorted({c for record in info["records"] for c in record["clip_ids"]})
    manifest = tmp_path / "manifest.jsonl"
    write_manifest(manifest, [Clip(clip_id=c, video_path=f"{c}.mp4", audio_path=None,
                                   duration_s=2.0, fps=16.0, width=64, height=32,
                                   sample_rate=24000, audio_channels=4, ambisonics="ambix",
                                   split="train", channel_order="XYWZ") for c in clip_ids])
    (tmp_path / "shards" / "preprocess_config.yaml").write_text(
        f"paths:\n  manifest: {manifest}\n  data_root: {tmp_path}\n")
    assert channel_order_main(["--shards", str(tmp_path / "shards")]) == 0
    out = capsys.readouterr().out
    assert f"decoded with XYWZ (from {manifest})" in out and "keep --channel-order XYWZ" in out
    for path in info["paths"]:                   # the decoded audio is in fact W, X, Z, Y
        with h5py.File(path, "r+") as h5:
            h5["foa_acn_sn3d"][...] = np.stack([stored_as(w, "WXZY") for w in h5["foa_acn_sn3d"][()]])
    assert channel_order_main(["--shards", str(tmp_path / "shards")]) == 0
    out = capsys.readouterr().out
    assert "best: WXZY" in out
    assert f"--channel-order {compose_channel_orders('XYWZ', 'WXZY')}" in out
    assert "files decoded with XYWZ" in out

