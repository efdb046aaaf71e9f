"""Decode layer: probing, ambiX audio in file order, streamed frames, and every bad input.

Media are generated with the ffmpeg binary (lavfi or raw numpy piped in), a few KB each.
"""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import numpy as np
import pytest

from pipeline.decode import (
    ambisonic_sanity,
    check_ambisonic_channels,
    decode_audio,
    decode_frames_at,
    iter_frames_at_indices,
    frame_indices_at,
    iter_video_frames,
    to_ambix_sn3d,
)
from pipeline.errors import (
    AmbisonicFormatError,
    ClipTooShortError,
    DecodeError,
    MissingMediaError,
    NotEquirectangularError,
    PipelineError,
)
from pipeline.ffmpeg_bin import channels_from_layout, ffmpeg_exe, parse_probe_output, probe

SR = 24_000
CHANNEL_FREQS_HZ = (500.0, 1000.0, 2000.0, 4000.0)
REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"


# ---------------------------------------------------------------------------------------------
# media factory


def make_media(path: Path, audio: np.ndarray | None = None, *, sample_rate: int = SR,
               size: tuple[int, int] | None = (64, 32), fps: int = 16, duration_s: float = 1.0,
               acodec: str = "pcm_f32le", frames: np.ndarray | None = None,
               vcodec: tuple[str, ...] | None = None, extra: tuple[str, ...] = ()) -> Path:
    """Write a test clip: testsrc video (or given RGB ``frames``) and ``audio`` (n, channels)."""
    cmd = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
    stdin = None
    if frames is not None:
        raw_frames = path.with_suffix(".rgb")
        raw_frames.write_bytes(np.ascontiguousarray(frames, dtype=np.uint8).tobytes())
        height, width = frames.shape[1:3]
        cmd += ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", str(fps),
                "-i", str(raw_frames)]
    elif size is not None:
        cmd += ["-f", "lavfi", "-i",
                f"testsrc=size={size[0]}x{size[1]}:rate={fps}:duration={duration_s}"]
    if audio is not None:
        audio = np.ascontiguousarray(audio, dtype="<f4")
        stdin = audio.tobytes()
        # input -ac only declares the layout of the raw stream; nothing is remixed
        cmd += ["-f", "f32le", "-ar", str(sample_rate), "-ac", str(audio.shape[1]), "-i", "pipe:"]
    if frames is not None or size is not None:
        cmd += ["-c:v", *(vcodec or (("ffv1",) if frames is not None else ("mpeg4",)))]
    if audio is not None:
        cmd += ["-c:a", acodec]
    cmd += [*extra, str(path)]
    subprocess.run(cmd, input=stdin, check=True, capture_output=True)
    return path


def tones(freqs=CHANNEL_FREQS_HZ, duration_s: float = 1.0, sample_rate: int = SR,
          amplitude: float = 0.3) -> np.ndarray:
    """(n, len(freqs)) float32, one sine per channel."""
    t = np.arange(int(round(duration_s * sample_rate))) / sample_rate
    return (amplitude * np.sin(2 * np.pi * np.outer(t, freqs))).astype(np.float32)


def peak_freqs_hz(x: np.ndarray, sample_rate: int) -> np.ndarray:
    spectrum = np.abs(np.fft.rfft(x, axis=1))
    return np.argmax(spectrum, axis=1) * sample_rate / x.shape[1]


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="module")
def clip_mkv(media) -> Path:
    return make_media(media / "tones.mkv", tones())


@pytest.fixture(scope="module")
def clip_mp4(media) -> Path:
    return make_media(media / "tones.mp4", tones(), acodec="aac")


# ---------------------------------------------------------------------------------------------
# probing


def test_probe_reports_streams(clip_mp4):
    info = probe(clip_mp4)
    assert info.duration_s == pytest.approx(1.0, abs=0.05)
    assert (info.video.width, info.video.height, info.video.fps) == (64, 32, 16.0)
    assert (info.audio.sample_rate, info.audio.channels, info.audio.codec) == (SR, 4, "aac")
    assert [s.kind for s in info.streams] == ["video", "audio"]


def test_parse_probe_output_without_ffmpeg():
    stderr = """Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'x.mp4':
  Duration: 00:01:02.50, start: 0.000000, bitrate: 313 kb/s
  Stream #0:0[0x1](und): Video: h264 (High) (avc1 / 0x31637661), yuv420p(tv), 3840x1920 [SAR 1:1 DAR 2:1], 29.97 fps, 29.97 tbr, 30k tbn (default)
  Stream #0:1[0x2](und): Audio: aac (LC) (mp4a / 0x6134706D), 48000 Hz, 4.0, fltp, 256 kb/s (default)
  Stream #0:2[0x3](und): Video: mjpeg, yuvj420p, 300x300, 90k tbr (attached pic)
"""
    info = parse_probe_output(stderr, "x.mp4")
    assert info.duration_s == pytest.approx(62.5)
    assert (info.video.width, info.video.height, info.video.fps) == (3840, 1920, 29.97)
    assert (info.audio.sample_rate, info.audio.channels) == (48_000, 4)
    assert len(info.streams) == 3


@pytest.mark.parametrize("layout, channels", [
    ("mono", 1), ("stereo", 2), ("4.0", 4), ("quad", 4), ("9 channels", 9),
    ("25 channels", 25), ("ambisonic 1", 4), ("ambisonic 2", 9), ("FL+FR+FC+BC", 4),
    ("ambisonic 1+stereo", 6), ("weird", None),
])
def test_channels_from_layout(layout, channels):
    assert channels_from_layout(layout) == channels


# ---------------------------------------------------------------------------------------------
# audio


@pytest.mark.parametrize("clip_fixture, tolerance_hz", [("clip_mkv", 0.0), ("clip_mp4", 2.0)])
def test_channel_order_is_file_order(request, clip_fixture, tolerance_hz):
    foa = decode_audio(request.getfixturevalue(clip_fixture))
    assert foa.shape == (4, SR) and foa.dtype == np.float32
    np.testing.assert_allclose(peak_freqs_hz(foa, SR), CHANNEL_FREQS_HZ, atol=tolerance_hz)


def test_pcm_audio_is_bit_exact(clip_mkv):
    np.testing.assert_array_equal(decode_audio(clip_mkv), tones().T)


def test_resampling_keeps_channels_and_frequencies(media):
    path = make_media(media / "tones48k.mkv", tones(sample_rate=48_000), sample_rate=48_000)
    foa = decode_audio(path, sample_rate=SR)
    assert foa.shape == (4, SR)
    np.testing.assert_allclose(peak_freqs_hz(foa, SR), CHANNEL_FREQS_HZ, atol=1.0)


def test_fuma_file_is_converted_to_ambix(media):
    # plane wave from the left (az = +90°, el = 0): ambiX W = s, Y = s, Z = X = 0
    s = tones(freqs=(700.0,))[:, 0]
    fuma_wxyz = np.stack([s / math.sqrt(2), 0 * s, s, 0 * s], axis=1)
    path = make_media(media / "fuma.mkv", fuma_wxyz, size=None)
    foa = decode_audio(path, convention="fuma")
    np.testing.assert_allclose(foa[0], s, atol=1e-6)
    np.testing.assert_allclose(foa[1], s, atol=1e-6)
    np.testing.assert_allclose(foa[2:], 0.0, atol=1e-6)
    assert ambisonic_sanity(foa) == []
    assert ambisonic_sanity(decode_audio(path, convention="ambix"))  # mislabelled: warned


def test_n3d_converter_scales_dipoles():
    x = np.ones((4, 3), dtype=np.float32)
    np.testing.assert_allclose(to_ambix_sn3d(x, "acn_n3d")[:, 0], [1, 3 ** -0.5, 3 ** -0.5, 3 ** -0.5],
                               rtol=1e-6)


@pytest.mark.parametrize("suffix, tolerance_s", [("wav", 1 / SR), ("mkv", 1e-3)])  # mkv: ms stamps
def test_segment_decoding_and_length_fitting(media, suffix, tolerance_s):
    ramp = np.repeat((np.arange(SR) / SR)[:, None], 4, axis=1).astype(np.float32)  # value = time
    path = make_media(media / f"ramp.{suffix}", ramp, size=None)
    segment = decode_audio(path, start_s=0.4, duration_s=0.25)
    assert segment.shape == (4, 6000)
    assert segment[0, 0] == pytest.approx(0.4, abs=tolerance_s)
    assert decode_audio(path, expected_duration_s=0.95).shape == (4, 22_800)
    padded = decode_audio(path, expected_duration_s=1.05)
    assert padded.shape == (4, 25_200) and np.all(padded[:, SR:] == 0)


def test_sanity_accepts_plane_wave_and_flags_n3d():
    s = 0.5 * np.sin(np.linspace(0, 200, 4800)).astype(np.float32)
    az, el = math.radians(-135), math.radians(30)
    foa = np.stack([s, s * math.cos(el) * math.sin(az), s * math.sin(el),
                    s * math.cos(el) * math.cos(az)])
    assert ambisonic_sanity(foa) == []
    n3d_as_sn3d = foa * np.array([1, 3 ** 0.5, 3 ** 0.5, 3 ** 0.5])[:, None]
    assert any("N3D" in w for w in ambisonic_sanity(n3d_as_sn3d))
    assert ambisonic_sanity(np.zeros((4, 10))) == ["audio is silent"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sanity_sums_equal_the_array_formulas(dtype):
    """The one-pass kernel behind ambisonic_sanity: each channel's float64 energy, the count at
    full scale and finiteness, as the numpy formulas give them, on strided and contiguous input."""
    from pipeline.decode import _sanity_sums

    rng = np.random.default_rng(3)
    interleaved = (0.4 * rng.standard_normal((9_001, 4))).astype(dtype)
    interleaved[rng.integers(0, 9_001, 40), rng.integers(0, 4, 40)] = 0.999   # at the threshold
    interleaved[rng.integers(0, 9_001, 40), rng.integers(0, 4, 40)] = -1.0
    for foa in (interleaved.T, np.ascontiguousarray(interleaved.T)):         # (4, n), any strides
        finite, energy, n_clipped = _sanity_sums(foa)
        x = np.asarray(foa, dtype=np.float64)
        assert finite
        np.testing.assert_allclose(energy, np.sum(x * x, axis=1), rtol=1e-12)
        assert n_clipped == int(np.sum(np.abs(x) >= 0.999)) >= 40
    for bad in (np.nan, np.inf, -np.inf):
        foa = np.ascontiguousarray(interleaved.T)
        foa[2, 5_000] = bad
        assert not _sanity_sums(foa)[0]
        assert ambisonic_sanity(foa) == ["contains NaN or inf samples"]
    clipped = np.ascontiguousarray(interleaved.T)
    clipped[0, :100] = 1.0
    assert any("full scale" in w for w in ambisonic_sanity(clipped))


# ---------------------------------------------------------------------------------------------
# video


def gray_frames(n: int, step: int = 8, size=(64, 32)) -> np.ndarray:
    """(n, h, w, 3) frames whose gray level 20 + step * k encodes the frame index k."""
    levels = 20 + step * np.arange(n)
    return np.broadcast_to(levels[:, None, None, None], (n, size[1], size[0], 3)).astype(np.uint8)


@pytest.fixture(scope="module")
def indexed_clip(media) -> Path:
    return make_media(media / "indexed16.mkv", frames=gray_frames(24), fps=16)


def frame_levels(frames: np.ndarray) -> np.ndarray:
    return frames.reshape(len(frames), -1).mean(axis=1)


def test_iter_video_frames_streams_chunks(indexed_clip):
    chunks = list(iter_video_frames(indexed_clip, fps=16, width=32, height=16, chunk_frames=5))
    assert [len(c) for c in chunks] == [5, 5, 5, 5, 4]
    assert chunks[0].shape[1:] == (16, 32, 3) and chunks[0].dtype == np.uint8
    np.testing.assert_allclose(frame_levels(np.concatenate(chunks)), 20 + 8 * np.arange(24), atol=3)


def test_iter_video_frames_from_start_and_early_close(indexed_clip):
    frames = iter_video_frames(indexed_clip, 16, 32, 16, start_s=0.5, duration_s=0.5, chunk_frames=4)
    first = next(frames)
    np.testing.assert_allclose(frame_levels(first), 20 + 8 * np.arange(8, 12), atol=3)
    frames.close()  # kills and reaps ffmpeg without reading the rest


def test_decode_frames_at_picks_instants(indexed_clip):
    frames = decode_frames_at(indexed_clip, [0.5, 0.0, 1.0, 0.5625, 0.5], 16, 32, 16)
    assert frames.shape == (5, 16, 32, 3)
    np.testing.assert_allclose(frame_levels(frames), 20 + 8 * np.array([8, 0, 16, 9, 8]), atol=3)


def test_decode_frames_at_seeks_exactly_in_h264_with_b_frames(media):
    h264 = ("libx264", "-preset", "ultrafast", "-g", "10", "-bf", "2", "-qp", "0")
    path = make_media(media / "indexed_h264.mp4", frames=gray_frames(24), fps=16, vcodec=h264)
    frames = decode_frames_at(path, [0.8125, 0.875, 1.0, 1.4375], 16, 32, 16)
    np.testing.assert_allclose(frame_levels(frames), 20 + 8 * np.array([13, 14, 16, 23]), atol=3)


def test_decode_frames_at_resamples_frame_rate(media):
    # ffmpeg's fps filter: output frame k is the last source frame starting before (k + 0.5) / fps
    clip48 = make_media(media / "indexed48.mkv", frames=gray_frames(48, step=4), fps=48)
    frames = decode_frames_at(clip48, [0.0, 0.5, 0.75], fps=16, width=32, height=16)
    np.testing.assert_allclose(frame_levels(frames), 20 + 4 * np.array([1, 25, 37]), atol=3)


def test_one_decoder_thread_gives_the_same_frames(media):
    """Preprocessing pins ffmpeg's decoder to one thread (decoder_threads); frame threading must
    not change a pixel: a lossy H.264 stream with B-frames and noisy content, 48 frames."""
    from pipeline.decode import _segment_options, decoder_threads

    rng = np.random.default_rng(3)
    frames = rng.integers(0, 256, (48, 64, 128, 3), dtype=np.uint8)
    h264 = ("libx264", "-preset", "ultrafast", "-g", "12", "-bf", "2", "-crf", "28")
    path = make_media(media / "threads_h264.mp4", frames=frames, fps=16, vcodec=h264)
    default = np.concatenate(list(iter_video_frames(path, 16, 64, 32)))
    with decoder_threads(1):
        assert _segment_options(0.0, None) == {"threads": "1"}
        single = np.concatenate(list(iter_video_frames(path, 16, 64, 32)))
    assert _segment_options(0.0, None) == {}
    assert single.shape == default.shape == (48, 32, 64, 3)
    np.testing.assert_array_equal(single, default)


def test_iter_frames_at_indices_equals_the_full_stream_at_those_frames(media):
    # The select filter drops frames before scaling: the kept ones are the bytes of the full
    # decode (48 fps source resampled to 16, scaled, an H.264 stream with B-frames).
    h264 = ("libx264", "-preset", "ultrafast", "-g", "10", "-bf", "2", "-qp", "0")
    path = make_media(media / "indexed48_h264.mp4", frames=gray_frames(48, step=4), fps=48,
                      vcodec=h264)
    full = np.concatenate(list(iter_video_frames(path, 16, 32, 16)))
    wanted = [1, 2, 3, 7, 8, 15]
    picked = list(iter_frames_at_indices(path, 16, 32, 16, wanted, chunk_frames=2))
    assert [index for index, _ in picked] == wanted
    for index, frame in picked:
        np.testing.assert_array_equal(frame, full[index])
    from_later = dict(iter_frames_at_indices(path, 16, 32, 16, [0, 2], start_s=0.25))
    np.testing.assert_array_equal(from_later[2], full[6])


def test_iter_frames_at_indices_without_select_when_there_are_too_many_runs(indexed_clip,
                                                                           monkeypatch):
    import pipeline.decode as decode

    full = np.concatenate(list(iter_video_frames(indexed_clip, 16, 32, 16)))
    monkeypatch.setattr(decode, "_MAX_SELECT_RANGES", 1)
    wanted = [2, 5, 6, 11]
    picked = list(iter_frames_at_indices(indexed_clip, 16, 32, 16, wanted))
    assert [index for index, _ in picked] == wanted
    for index, frame in picked:
        np.testing.assert_array_equal(frame, full[index])
    with pytest.raises(ClipTooShortError):
        list(iter_frames_at_indices(indexed_clip, 16, 32, 16, [20, 30]))


def test_iter_frames_at_indices_errors(indexed_clip):
    with pytest.raises(ValueError, match="unique increasing"):
        list(iter_frames_at_indices(indexed_clip, 16, 32, 16, [3, 3]))
    with pytest.raises(ClipTooShortError, match=r"index 30 at 16 fps\), got only 1 of the 2"):
        list(iter_frames_at_indices(indexed_clip, 16, 32, 16, [20, 30]))


def test_frame_indices_at():
    np.testing.assert_array_equal(frame_indices_at([0.0, 0.0624, 0.0625, 1.0], 16), [0, 0, 1, 16])
    with pytest.raises(ValueError):
        frame_indices_at([-1.0], 16)


# ---------------------------------------------------------------------------------------------
# bad inputs: each gives a named exception whose message names the file and says expected/got


def assert_names_file(excinfo, path: Path, *fragments: str):
    message = str(excinfo.value)
    assert str(path) in message, message
    for fragment in fragments:
        assert fragment in message, message


def test_zero_byte_file(media):
    path = media / "empty.mp4"
    path.write_bytes(b"")
    with pytest.raises(DecodeError) as excinfo:
        decode_audio(path)
    assert_names_file(excinfo, path, "empty file (0 bytes)")


def test_missing_file(media):
    with pytest.raises(MissingMediaError) as excinfo:
        decode_audio(media / "nope.mp4")
    assert_names_file(excinfo, media / "nope.mp4", "no such file")


def test_text_file(media):
    path = media / "notes.mp4"
    path.write_text("this is not a video\n" * 20)
    with pytest.raises(DecodeError) as excinfo:
        list(iter_video_frames(path, 16, 32, 16))
    assert_names_file(excinfo, path, "expected a readable media file")


def test_truncated_mp4(media, clip_mp4):
    path = media / "truncated.mp4"
    data = clip_mp4.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DecodeError) as excinfo:
        decode_audio(path)
    assert_names_file(excinfo, path)


def test_truncated_faststart_mp4_is_too_short(media):
    full = make_media(media / "fast.mp4", tones(duration_s=2.0), duration_s=2.0, acodec="aac",
                      extra=("-movflags", "+faststart"))
    path = media / "fast_truncated.mp4"
    data = full.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ClipTooShortError) as excinfo:
        decode_audio(path, expected_duration_s=2.0)
    assert_names_file(excinfo, path, "expected 2.000 s of audio")
    with pytest.raises(ClipTooShortError, match="declared end at 2.000 s"):
        decode_audio(path)  # no expected length: the container's duration is the reference
    with pytest.raises(ClipTooShortError, match="declared end"):
        list(iter_video_frames(path, 16, 32, 16))


def test_no_audio_stream(media):
    path = make_media(media / "silent_video.mp4")
    with pytest.raises(DecodeError) as excinfo:
        decode_audio(path)
    assert_names_file(excinfo, path, "expected an audio stream, got none")


@pytest.mark.parametrize("n_channels, expected", [
    (1, "expected 4-channel ambiX audio, got 1 channel"),
    (2, "expected 4-channel ambiX audio, got 2 channels"),
    (9, "expected 4-channel ambiX audio, got 9 channels (2nd-order"),
])
def test_wrong_channel_count(media, n_channels, expected):
    path = make_media(media / f"ch{n_channels}.mkv", tones(freqs=[440.0] * n_channels))
    with pytest.raises(AmbisonicFormatError) as excinfo:
        decode_audio(path)
    assert_names_file(excinfo, path, expected)


def test_stereo_aac_mp4(media):
    path = make_media(media / "stereo.mp4", tones(freqs=(440.0, 880.0)), acodec="aac")
    with pytest.raises(AmbisonicFormatError, match="got 2 channels"):
        decode_audio(path)


def test_hoa_accepted_only_on_request(media):
    freqs = [300.0 * (k + 1) for k in range(9)]
    path = make_media(media / "hoa9.mkv", tones(freqs=freqs, amplitude=0.1))
    foa = decode_audio(path, accept_hoa=True)
    np.testing.assert_allclose(peak_freqs_hz(foa, SR), freqs[:4])
    np.testing.assert_allclose(peak_freqs_hz(decode_audio(path, convention="hoa_ambix"), SR),
                               freqs[:4])


def test_check_ambisonic_channels_rules():
    check_ambisonic_channels(4, "fuma")
    check_ambisonic_channels(25, "ambix", accept_hoa=True)
    with pytest.raises(AmbisonicFormatError):
        check_ambisonic_channels(6, "ambix", accept_hoa=True)  # not (N+1)^2
    with pytest.raises(ValueError):
        check_ambisonic_channels(4, "b-format")


def test_not_equirectangular(media):
    path = make_media(media / "4x3.mp4", tones(), size=(64, 48))
    with pytest.raises(NotEquirectangularError) as excinfo:
        decode_frames_at(path, [0.0], 16, 32, 16, require_equirect=True)
    assert_names_file(excinfo, path, "expected a 2:1 equirectangular frame", "got 64x48")
    assert decode_frames_at(path, [0.0], 16, 32, 16).shape == (1, 16, 32, 3)  # allowed if asked


def test_nan_audio(media):
    audio = tones()
    audio[100:110, 2] = np.nan
    path = make_media(media / "nan.mkv", audio)
    with pytest.raises(AmbisonicFormatError) as excinfo:
        decode_audio(path)
    assert_names_file(excinfo, path, "expected finite audio samples, got 10 NaN/inf")


def test_clip_shorter_than_requested(clip_mkv):
    with pytest.raises(ClipTooShortError) as excinfo:
        decode_audio(clip_mkv, expected_duration_s=2.0)
    assert_names_file(excinfo, clip_mkv, "expected 2.000 s of audio", "got 1.000 s")
    with pytest.raises(ClipTooShortError, match="got 0"):
        decode_audio(clip_mkv, start_s=5.0, duration_s=1.0)
    with pytest.raises(ClipTooShortError, match="expected 32 frames"):
        list(iter_video_frames(clip_mkv, 16, 32, 16, duration_s=2.0))
    with pytest.raises(ClipTooShortError, match="expected a frame at 1.500 s"):
        decode_frames_at(clip_mkv, [0.0, 1.5], 16, 32, 16)


def test_all_errors_share_a_base(media):
    path = media / "empty2.mkv"
    path.write_bytes(b"")
    with pytest.raises(PipelineError):
        decode_audio(path)


# ---------------------------------------------------------------------------------------------
# real recordings (../shared/realdata, absent in a user's clone)


def realdata(name: str) -> Path:
    path = REALDATA / name
    if not path.is_file():
        pytest.skip(f"real recording {name} not found in {REALDATA} (only in the project workspace)")
    return path


def test_eigenscape_fourth_order_excerpt():
    path = realdata("eigenscape_Beach.1_excerpt.wav")
    with pytest.raises(AmbisonicFormatError, match="25 channels"):
        decode_audio(path)
    foa = decode_audio(path, accept_hoa=True)
    assert foa.shape == (4, round(0.3 * SR))
    assert ambisonic_sanity(foa) == []


def test_jsambisonics_fuma_recording():
    foa = decode_audio(realdata("jsambisonics_BF_rec2.ogg"), convention="fuma", start_s=2.0,
                       duration_s=2.0)
    assert foa.shape == (4, 2 * SR)
    assert ambisonic_sanity(foa) == []
    energy = np.sum(foa.astype(np.float64) ** 2, axis=1)
    assert np.argmax(energy) == 0  # W loudest once converted
