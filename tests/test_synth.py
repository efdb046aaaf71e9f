"""Synthetic 360° scenes: determinism, geometry on the sphere, the FOA track through the
container round trip (physics: intensity-vector direction), and the EigenScape-layout set."""

from __future__ import annotations

import json
import math
import subprocess

import numpy as np
import py360convert
import pytest
import soundfile as sf
from scipy import signal as sps

from pipeline.ffmpeg_bin import ffmpeg_exe
from pipeline.foa import encode_plane_wave
from pipeline.manifest import read_manifest
from pipeline.spatial import angular_distance_rad, direction_to_equirect_pixel, vector_to_direction
from pipeline.synth import eigenscape
from pipeline.synth.audio import fibonacci_sphere, scene_foa
from pipeline.synth.cli import ClipJob, ResumeMismatchError, generate_videos, synthesize_clip
from pipeline.synth.render import (
    background_image,
    object_masks_at,
    pixel_directions,
    render_frame,
    render_frames,
    render_label_map,
)
from pipeline.synth.scenes import (
    OBJECT_CLASSES,
    ObjectSpec,
    SceneConfig,
    envelope,
    make_scene,
    object_directions_at,
    sample_room,
    sample_scene,
)
from pipeline.synth.write import write_clip

TINY = SceneConfig(width=128, height=64, fps=16, duration_s=1.0, sample_rate=24000)


def decode_audio(path) -> np.ndarray:
    """(channels, n) float32 from the first audio stream, as stored (no -ac, no remix)."""
    raw = subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-i", str(path), "-map", "0:a:0", "-f", "f32le", "-"],
        capture_output=True,
        check=True,
    ).stdout
    return np.frombuffer(raw, dtype="<f4").reshape(-1, 4).T


def decode_first_frame(path, width: int, height: int) -> np.ndarray:
    raw = subprocess.run(
        [
            ffmpeg_exe(),
            "-v",
            "error",
            "-i",
            str(path),
            "-frames:v",
            "1",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-",
        ],
        capture_output=True,
        check=True,
    ).stdout
    return np.frombuffer(raw, dtype=np.uint8).reshape(height, width, 3)


def intensity_direction_deg(foa: np.ndarray, sample_rate: int) -> tuple[float, float]:
    """Direction of the time-frequency-summed active intensity Re(conj(W) [X, Y, Z])."""
    _, _, spec = sps.stft(foa, fs=sample_rate, nperseg=512, noverlap=512 - 240)
    w, y, z, x = spec
    intensity = [np.sum(np.real(np.conj(w) * c)) for c in (x, y, z)]
    az, el = vector_to_direction(np.array(intensity))
    return math.degrees(az), math.degrees(el)


def spherical_centroid_pixel(mask: np.ndarray) -> tuple[float, float]:
    """(col, row) of the solid-angle-weighted mean direction of the pixels in ``mask``."""
    height, width = mask.shape
    dirs = pixel_directions(width, height).astype(np.float64)
    weights = np.cos(np.pi * (0.5 - (np.arange(height) + 0.5) / height))[:, None] * mask
    mean = (dirs * weights[..., None]).sum(axis=(0, 1))
    az, el = vector_to_direction(mean)
    return direction_to_equirect_pixel(az, el, width, height)


# --------------------------------------------------------------------------- scenes, determinism


def test_scene_is_deterministic_from_seed():
    a = sample_scene(TINY, (7, 0, 3), "c")
    b = sample_scene(TINY, (7, 0, 3), "c")
    assert json.dumps(a) == json.dumps(b)
    assert json.dumps(a) != json.dumps(sample_scene(TINY, (7, 0, 4), "c"))
    np.testing.assert_array_equal(scene_foa(a), scene_foa(b))
    np.testing.assert_array_equal(render_frame(a, 0.5), render_frame(b, 0.5))


def test_ground_truth_json_round_trip_renders_identically():
    gt = sample_scene(TINY, (1, 0, 0), "c")
    back = json.loads(json.dumps(gt))
    assert back == gt
    np.testing.assert_array_equal(render_label_map(back, 0.25), render_label_map(gt, 0.25))
    np.testing.assert_array_equal(scene_foa(back), scene_foa(gt))


def test_sampled_scenes_have_the_promised_structure():
    cfg = SceneConfig(width=128, height=64, duration_s=2.0)
    scenes = [sample_scene(cfg, (0, 0, i), f"c{i}") for i in range(40)]
    for gt in scenes:
        sources = [o for o in gt["objects"] if o["visible"] and o["sounding"]]
        assert 1 <= len(sources) <= 4
        for obj in gt["objects"]:
            assert (
                len(obj["azimuth_rad"])
                == len(obj["elevation_rad"])
                == len(obj["activity"])
                == gt["n_frames"]
            )
            assert math.radians(8) <= obj["radius_rad"] <= math.radians(20)
            if not obj["sounding"]:
                assert not any(obj["activity"])
            steps = np.abs(np.diff(np.unwrap(obj["azimuth_rad"]))) * np.cos(obj["elevation_rad"][1:])
            assert steps.max() < math.radians(2.0)  # smooth, slow tracks
    flags = {(o["visible"], o["sounding"]) for gt in scenes for o in gt["objects"]}
    assert flags == {(True, True), (True, False), (False, True)}  # silent objects, off-screen sounds


def test_envelope_and_object_directions_at():
    assert envelope([[0.5, 1.0]], [0.0, 0.51, 0.75, 0.99, 1.5]).tolist() == pytest.approx(
        [0, 0.5, 1, 0.5, 0]
    )
    gt = make_scene(TINY, [ObjectSpec("drum", 1.0, 0.2, on_intervals_s=((0.0, 0.5),))], "c")
    (state,) = object_directions_at(gt, 0.25)
    assert (state.azimuth_rad, state.elevation_rad, state.active) == (
        pytest.approx(1.0),
        pytest.approx(0.2),
        True,
    )
    assert not object_directions_at(gt, 0.75)[0].active


# --------------------------------------------------------------------------- geometry


@pytest.mark.parametrize(
    "azimuth_deg, elevation_deg",
    [(30.0, 10.0), (-100.0, -25.0), (180.0, 0.0), (-175.0, 20.0), (60.0, 70.0)],
    ids=["front-left", "behind-right-low", "seam", "seam-offset", "el70"],
)
def test_object_is_rendered_at_its_direction(azimuth_deg, elevation_deg):
    cfg = SceneConfig(width=256, height=128, duration_s=0.5)
    az, el = math.radians(azimuth_deg), math.radians(elevation_deg)
    gt = make_scene(cfg, [ObjectSpec("bell", az, el, radius_rad=math.radians(12))], "c")
    labels = render_label_map(gt, 0.0)
    assert set(np.unique(labels)) == {0, 1 + OBJECT_CLASSES[0].class_id}
    col, row = spherical_centroid_pixel(labels > 0)
    want_col, want_row = direction_to_equirect_pixel(az, el, cfg.width, cfg.height)
    col_error = (col - want_col + cfg.width / 2) % cfg.width - cfg.width / 2
    assert abs(col_error) < 0.5 and abs(row - want_row) < 0.5
    if azimuth_deg == 180.0:  # straddles the seam: pixels on both edges
        assert labels[:, 0].any() and labels[:, -1].any()


def test_object_near_the_pole_is_a_centred_disk_in_a_gnomonic_crop():
    cfg = SceneConfig(width=512, height=256, duration_s=0.5)
    az, el = math.radians(-40.0), math.radians(70.0)
    radius = math.radians(12.0)
    gt = make_scene(cfg, [ObjectSpec("bell", az, el, radius_rad=radius)], "c")
    labels = render_label_map(gt, 0.0).astype(np.float32)[..., None]
    fov_deg, size = 60.0, 121
    crop = py360convert.e2p(
        labels, fov_deg, -math.degrees(az), math.degrees(el), (size, size), mode="nearest"
    )[..., 0]
    rows, cols = np.nonzero(crop > 0)
    centre = (size - 1) / 2
    assert abs(rows.mean() - centre) < 1.0 and abs(cols.mean() - centre) < 1.0
    focal = (size / 2) / math.tan(math.radians(fov_deg / 2))
    want_radius_px = focal * math.tan(radius)  # always-on object: rendered at its full radius
    assert rows.std() == pytest.approx(cols.std(), rel=0.05)  # round, not stretched
    assert math.sqrt(len(rows) / math.pi) == pytest.approx(want_radius_px, rel=0.05)


def test_label_map_is_consistent_with_the_frame():
    gt = sample_scene(SceneConfig(width=256, height=128, duration_s=1.0), (3, 0, 1), "c")
    background = background_image(gt["background"], gt["width"], gt["height"])
    for t_s in (0.0, 0.5):
        frame = render_frame(gt, t_s, background)
        labels = render_label_map(gt, t_s)
        np.testing.assert_array_equal(frame[labels == 0], background[labels == 0])
        changed = np.any(frame != background, axis=-1)
        assert changed[labels > 0].mean() > 0.9
        expected = {1 + o["class_id"] for o in gt["objects"] if o["visible"]}
        assert set(np.unique(labels)) - {0} <= expected
        assert len(object_masks_at(gt, t_s)) == sum(o["visible"] for o in gt["objects"])


def test_visual_pulse_follows_the_sound_envelope():
    cfg = SceneConfig(width=256, height=128, duration_s=1.0)
    gt = make_scene(
        cfg, [ObjectSpec("siren", 0.0, 0.0, math.radians(15), on_intervals_s=((0.5, 2.0),))], "c"
    )
    off, on = (render_label_map(gt, t) > 0 for t in (0.25, 0.75))
    assert on.sum() > 1.25 * off.sum()  # grows while it sounds (radius x 1 / 0.85)
    frame_off, frame_on = render_frame(gt, 0.25), render_frame(gt, 0.75)
    assert frame_on[off].mean() > frame_off[off].mean() + 10  # and brightens


# --------------------------------------------------------------------------- media round trip


@pytest.mark.parametrize("container", ["mp4", "mkv"])
def test_decoded_foa_points_to_the_source(tmp_path, container):
    for azimuth_deg, elevation_deg in [(100.0, 25.0), (-135.0, -30.0)]:
        az, el = math.radians(azimuth_deg), math.radians(elevation_deg)
        gt = make_scene(TINY, [ObjectSpec("bell", az, el)], "c")
        path = write_clip(
            tmp_path / f"c.{container}",
            render_frames(gt),
            scene_foa(gt),
            fps=TINY.fps,
            sample_rate=TINY.sample_rate,
        )
        foa = decode_audio(path)
        assert foa.shape[0] == 4 and abs(foa.shape[1] - TINY.n_samples) <= 1024
        rms = np.sqrt(np.mean(foa**2, axis=1))
        assert rms[0] >= rms[1:].max()  # W carries the most energy
        got_az, got_el = intensity_direction_deg(foa, TINY.sample_rate)
        error = math.degrees(angular_distance_rad(math.radians(got_az), math.radians(got_el), az, el))
        assert error < 5.0, (container, azimuth_deg, elevation_deg, got_az, got_el)
        if container == "mkv":  # PCM float: bit-exact
            np.testing.assert_array_equal(foa, scene_foa(gt))
        frame = decode_first_frame(path, TINY.width, TINY.height).astype(int)
        assert np.abs(frame - render_frame(gt, 0.0)).mean() < 8  # same picture, not flipped


def test_cli_driver_writes_manifest_and_resumes(tmp_path):
    records = generate_videos(tmp_path, n_train=2, n_test=1, seed=5, scene=TINY, workers=1)
    assert [r.split for r in records] == ["train", "train", "test"]
    assert read_manifest(tmp_path / "manifest.jsonl") == records
    for record in records:
        assert (tmp_path / record.video_path).is_file() and (tmp_path / record.gt_path).is_file()
        gt = json.loads((tmp_path / record.gt_path).read_text())
        assert gt["clip_id"] == record.clip_id and gt["seed"][0] == 5
    job = ClipJob(str(tmp_path), "train", 0, 5, "mp4", TINY)
    mtime = (tmp_path / job.video_rel).stat().st_mtime_ns
    assert synthesize_clip(job) == (records[0], False)  # resumed: nothing rewritten
    assert (tmp_path / job.video_rel).stat().st_mtime_ns == mtime
    with pytest.raises(ResumeMismatchError, match="duration_s"):
        synthesize_clip(
            ClipJob(
                str(tmp_path), "train", 0, 5, "mp4", SceneConfig(width=128, height=64, duration_s=2.0)
            )
        )


def test_validation_split_adds_clips_without_changing_train_or_test(tmp_path):
    plain = generate_videos(tmp_path / "a", n_train=1, n_test=1, seed=5, scene=TINY, workers=1)
    with_val = generate_videos(tmp_path / "b", n_train=1, n_test=1, n_val=1, seed=5, scene=TINY,
                               workers=1)
    assert [r.split for r in with_val] == ["train", "val", "test"]
    by_split = {r.split: r for r in with_val}
    gt = lambda root, record: json.loads((root / record.gt_path).read_text())
    for record in plain:                            # same clips, same content
        assert gt(tmp_path / "a", record) == gt(tmp_path / "b", by_split[record.split])
    val = gt(tmp_path / "b", by_split["val"])
    assert val["seed"] == [5, 2, 0] and val["objects"] != gt(tmp_path / "a", plain[0])["objects"]


def test_ambience_is_diffuse():
    foa = scene_foa(make_scene(TINY, [], "c", ambience_db=-20.0))
    w_energy = np.mean(foa[0] ** 2)
    for dipole in foa[1:]:
        assert np.mean(dipole**2) / w_energy == pytest.approx(1 / 3, abs=0.05)
    _, _, spec = sps.stft(foa, fs=TINY.sample_rate, nperseg=512)
    w = spec[0]
    energy = (np.abs(spec) ** 2).sum(axis=0) / 2  # SN3D: (|W|² + |X|² + |Y|² + |Z|²) / 2
    intensity = np.stack([np.real(np.conj(w) * c) for c in spec[1:]])
    assert np.linalg.norm(intensity.sum(axis=(1, 2))) / energy.sum() < 0.1


# --------------------------------------------------------------------------- EigenScape layout


def test_real_spherical_harmonics_sn3d():
    az, el = fibonacci_sphere(20000)
    np.testing.assert_allclose(
        eigenscape.real_sh_sn3d(4, 0.7, -0.3)[:4],
        encode_plane_wave(np.ones(1), 0.7, -0.3)[:, 0],
        atol=1e-6,
    )
    gains = eigenscape.real_sh_sn3d(4, az, el)
    gram = gains @ gains.T * (4 * np.pi / len(az))
    degrees = np.array([eigenscape.acn_degree_order(acn)[0] for acn in range(25)])
    np.testing.assert_allclose(gram, np.diag(4 * np.pi / (2 * degrees + 1)), atol=1e-3)  # SN3D norms
    assert eigenscape.acn_degree_order(8) == (2, 2) and eigenscape.acn_degree_order(24) == (4, 4)


def test_eigenscape_set_layout_and_class_statistics(tmp_path):
    from pipeline.synth.cli import generate_eigenscape

    cfg = eigenscape.EigenscapeConfig(duration_s=1.0, recordings_per_class=2)
    generate_eigenscape(tmp_path, seed=0, cfg=cfg, workers=1, segment_s=0.5)
    names = sorted(p.name for p in tmp_path.glob("*.wav"))
    assert names == sorted(f"{c}.{k}.wav" for c in eigenscape.SCENE_CLASS_NAMES for k in (1, 2))
    assert len(eigenscape.SCENE_CLASS_NAMES) == 8
    info = sf.info(str(tmp_path / "Beach.1.wav"))
    assert (info.channels, info.samplerate, info.frames) == (25, 24000, 24000)
    truth = json.loads((tmp_path / "ground_truth.json").read_text())
    assert truth["recordings"]["Park.2.wav"]["scene_class"] == "Park"
    assert (tmp_path / "manifest.jsonl").is_file()

    def stats(name):
        hoa, _ = sf.read(str(tmp_path / name), always_2d=True)
        w, z = hoa[:, 0], hoa[:, 2]
        spectrum = np.abs(np.fft.rfft(w)) ** 2
        centroid_hz = (spectrum * np.fft.rfftfreq(len(w), 1 / 24000)).sum() / spectrum.sum()
        return (
            np.sqrt(np.mean(w**2)),
            centroid_hz,
            np.mean(w * z) / np.mean(w**2),
            np.mean(hoa[:, 4:] ** 2),
        )

    for k in (1, 2):
        busy, quiet, wood = (stats(f"{c}.{k}.wav") for c in ("BusyStreet", "QuietStreet", "Woodland"))
        assert busy[0] > 2 * quiet[0]  # louder
        assert wood[1] > 4 * busy[1]  # brighter
        assert wood[2] > busy[2] + 0.1  # sources higher up
        assert busy[3] > 0  # orders 2-4 carry signal


# ----------------------------------------------------------------------------- the spatial preset

def _spatial_config(**changes):
    from pipeline.synth.cli import PRESETS

    return SceneConfig(duration_s=2.0, **{**PRESETS["spatial"]["scene"], **changes})


def test_default_scene_draws_are_unchanged_by_the_spatial_options():
    """Fingerprint of default scenes and one mix, taken with the code before the spatial
    preset existed: its options draw nothing unless they are switched on."""
    import hashlib
    import json

    from pipeline.synth.audio import scene_foa

    digest = hashlib.sha1()
    for k in range(5):
        gt = sample_scene(SceneConfig(duration_s=2.0), (0, 0, k), f"c{k}")
        gt["classes"] = [{key: v for key, v in c.items() if key != "shape"}
                         for c in gt["classes"]]
        digest.update(json.dumps(gt, sort_keys=True).encode())
    assert digest.hexdigest() == "fff69bd14a75d56d9d1e38cc780329a5dc8a9cd9"
    gt = sample_scene(SceneConfig(duration_s=1.0), (0, 0, 0), "c0")
    assert float(np.abs(scene_foa(gt)).sum()) == pytest.approx(5144.31689453125, rel=1e-6)


def test_spatial_preset_has_same_class_sources_apart_and_a_silent_twin():
    cfg = _spatial_config()
    n_ok = 0
    for k in range(40):
        gt = sample_scene(cfg, (0, 0, k), f"c{k}")
        assert "room" in gt and gt["render"] == {"visual_pulse": False}
        if "same_class" not in gt:
            continue
        states = [s for s in object_directions_at(gt, 1.0) if s.visible]
        sounding = [s for s in states if s.sounding and s.active]
        assert {s.class_name for s in states} == {gt["same_class"]}
        assert len(sounding) >= 2 and any(not s.sounding for s in states)
        for i, a in enumerate(sounding):
            for b in sounding[i + 1:]:
                assert angular_distance_rad(a.azimuth_rad, a.elevation_rad, b.azimuth_rad,
                                            b.elevation_rad) >= math.radians(60.0) - 0.2
        n_ok += 1
    assert n_ok >= 24                                   # most clips (p_same_class = 0.8)


def test_without_pulse_objects_are_drawn_as_when_sounding():
    gt = make_scene(SceneConfig(width=128, height=64, duration_s=1.0),
                    [ObjectSpec("drum", 0.0, 0.0, on_intervals_s=((0.5, 0.6),))], "c")
    off = render_frame(gt, 0.0)
    gt["render"] = {"visual_pulse": False}
    assert not np.array_equal(render_frame(gt, 0.0), off)      # pulse off: full size and colour
    on = dict(gt)
    del on["render"]
    np.testing.assert_array_equal(render_frame(gt, 0.0), render_frame(on, 0.55))


def test_image_sources_come_from_the_mirrored_walls():
    from pipeline.synth.audio import SPEED_OF_SOUND_M_S, image_sources

    room = {"size_m": [8.0, 6.0, 3.0], "listener_m": [4.0, 3.0, 1.5], "source_distance_m": 2.0,
            "wall_gain": 0.8}
    images = image_sources(room, 0.0, 0.0)                # source 2 m straight ahead
    floor, ceiling = images[4], images[5]                 # z walls at 0 and 3 m
    assert floor[1] < 0 < ceiling[1] and abs(floor[0]) < 1e-9
    # Floor image 1.5 m below the floor (3 m below the source), 2 m ahead: sqrt(13) m away.
    assert floor[2] == pytest.approx((math.sqrt(13.0) - 2.0) / SPEED_OF_SOUND_M_S)
    assert floor[3] == pytest.approx(0.8 * 2.0 / math.sqrt(13.0))
    assert floor[1] == pytest.approx(-math.atan2(3.0, 2.0))
    back = images[0]                                      # x wall at 0: behind the listener
    assert abs(abs(back[0]) - math.pi) < 1e-9 and back[2] > 0


def test_reverberation_keeps_the_direct_sound_direction():
    """A reverberant source is still heard from its direct direction (intensity DOA within
    10 deg at the preset's lowest direct-to-reverberant ratio), and the room adds energy."""
    from pipeline.features import doa_from_intensity, intensity_directness
    from pipeline.synth.audio import scene_foa

    cfg = _spatial_config(drr_db=(0.0, 0.0), rt60_s=(0.8, 0.8))
    gt = make_scene(cfg, [ObjectSpec("fountain", math.radians(70.0), math.radians(20.0))], "c")
    gt["room"] = sample_room(np.random.default_rng(3), cfg)
    wet = scene_foa(gt)
    az, el = doa_from_intensity(wet[:, 24000:48000])
    assert angular_distance_rad(az, el, math.radians(70.0), math.radians(20.0)) < math.radians(10)
    dry = dict(gt)
    del dry["room"]
    # The room makes the field less directional (DirAC: |sum I| / sum E, 1 for a plane wave).
    assert intensity_directness(scene_foa(dry)) > 0.95
    assert intensity_directness(wet) < intensity_directness(scene_foa(dry)) - 0.1


# --------------------------------------------------------------------------- the direction preset

def test_spatial_preset_draws_are_unchanged_by_the_direction_options():
    """Fingerprint of `spatial` scenes taken with the code before `p_silent_twin` existed."""
    import hashlib
    import json

    digest = hashlib.sha1()
    for k in range(8):
        gt = sample_scene(_spatial_config(), (0, 0, k), f"c{k}")
        digest.update(json.dumps(gt, sort_keys=True).encode())
    assert digest.hexdigest() == "33906e7c56ec9850d4fa82a3b0e2a604931aeb8e"


def test_direction_preset_puts_only_sounding_same_class_objects_near_the_horizon():
    from pipeline.synth.cli import PRESETS

    scene = PRESETS["direction"]["scene"]
    cfg = SceneConfig(duration_s=2.0, **scene)
    max_elevation_rad = math.radians(scene["max_abs_elevation_deg"] + 8.0)   # + track wobble
    for k in range(30):
        gt = sample_scene(cfg, (0, 0, k), f"c{k}")
        assert "room" in gt and gt["render"] == {"visual_pulse": False}
        objects = gt["objects"]
        assert 2 <= len(objects) <= 3
        assert all(o["visible"] and o["sounding"] for o in objects)     # no twin, no off-screen
        assert {o["class_name"] for o in objects} == {gt["same_class"]}
        assert all(math.radians(12.0) - 1e-6 <= o["radius_rad"] <= math.radians(24.0) + 1e-6
                   for o in objects)
        assert max(abs(e) for o in objects for e in o["elevation_rad"]) <= max_elevation_rad
        assert 6.0 <= gt["room"]["drr_db"] <= 12.0


def test_silent_twin_probability_between_never_and_always():
    twins = [any(not o["sounding"] for o in
                 sample_scene(_spatial_config(p_same_class=1.0, p_silent_twin=p), (0, 0, k),
                              "c")["objects"]) for p in (0.0, 0.5) for k in range(40)]
    never, half = sum(twins[:40]), sum(twins[40:])
    assert never == 0 and 10 <= half <= 30
