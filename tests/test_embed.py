"""Embeddings of a user's folder: FOA and higher-order files, per-direction embeddings, block
reading equal to whole-file reading, skipping, resuming and refusing mismatched settings."""

import h5py
import numpy as np
import pytest
import soundfile as sf
import torch

from pipeline.foa import encode_plane_wave
from tests.test_eval_binary import make_tiny_run
from evals.audio.embed import embed_file, embed_folder
from evals.frozen import load_frozen
from evals.av.localize import direction_grid

torch.set_num_threads(1)  # tiny models: threads only add contention on 2 shared cores


def write_recordings(folder, rng):
    """A 2.5 s FOA file at 48 kHz, a 1.2 s 2nd-order (9-channel) file at 24 kHz in a
    sub-folder, and a 0.4 s file (shorter than one window)."""
    folder.mkdir(parents=True)
    foa = encode_plane_wave(0.1 * rng.standard_normal(120000).astype(np.float32), 0.5, 0.1)
    sf.write(folder / "street.wav", foa.T, 48000, subtype="FLOAT")
    (folder / "hoa").mkdir()
    hoa = np.concatenate([encode_plane_wave(0.1 * rng.standard_normal(28800).astype(np.float32),
                                            -1.0, 0.0), 0.01 * np.ones((5, 28800), np.float32)])
    sf.write(folder / "hoa" / "park.wav", hoa.T, 24000, subtype="FLOAT")
    sf.write(folder / "short.wav", np.zeros((9600, 4), np.float32), 24000)


@pytest.mark.slow
def test_embed_folder_writes_skips_resumes_and_checks_settings(tmp_path):
    ckpt, _ = make_tiny_run(tmp_path / "run", audio_input="foa_iv")
    in_dir, out = tmp_path / "recordings", tmp_path / "emb.h5"
    write_recordings(in_dir, np.random.default_rng(0))
    directions = direction_grid(90.0, (0.0,))
    summary = embed_folder(ckpt, in_dir, out, directions=directions, on_error="skip",
                           device="cpu")
    assert (summary["files_found"], summary["written"], summary["skipped"]) == (3, 2, 1)
    with h5py.File(out, "r") as h5:
        assert h5.attrs["format"] == "spatial-avsa-embeddings" and h5.attrs["feature_dim"] == 32
        assert h5["directions/azimuth_rad"].shape == (4,)
        groups = {h5["files"][g].attrs["path"]: h5["files"][g] for g in h5["files"]}
        assert set(groups) == {"street.wav", "hoa/park.wav"}
        street, park = groups["street.wav"], groups["hoa/park.wav"]
        np.testing.assert_allclose(street["window_start_s"][()], [0.0, 1.0])
        assert street["embedding"].shape == (2, 32)
        assert street["embedding_directions"].shape == (2, 4, 32)
        assert (park.attrs["channels"], park["embedding"].shape) == (9, (1, 32))
        assert park.attrs["complete"] and "short.wav" in h5.attrs["skipped"]

    again = embed_folder(ckpt, in_dir, out, directions=directions, on_error="skip", device="cpu")
    assert (again["written"], again["already_done"]) == (0, 2)
    with pytest.raises(ValueError, match="other settings"):
        embed_folder(ckpt, in_dir, out, hop_s=0.5, directions=directions, on_error="skip",
                     device="cpu")
    with pytest.raises(ValueError, match="shorter than one"):
        embed_folder(ckpt, in_dir, tmp_path / "strict.h5", on_error="raise", device="cpu")


@pytest.mark.slow
def test_reading_in_blocks_gives_the_windows_of_the_whole_file(tmp_path):
    ckpt, _ = make_tiny_run(tmp_path / "run", audio_input="foa")
    frozen = load_frozen(ckpt, "cpu")
    rng = np.random.default_rng(1)
    path = tmp_path / "long.wav"
    foa = encode_plane_wave(0.1 * rng.standard_normal(48000 * 5).astype(np.float32), 2.0, -0.3)
    sf.write(path, foa.T, 48000, subtype="FLOAT")                 # 5 s, resampled to 24 kHz
    whole = embed_file(frozen, path, "ambix", 0.5, None, block_s=60.0)
    blocks = embed_file(frozen, path, "ambix", 0.5, None, block_s=1.0)
    np.testing.assert_allclose(blocks["window_start_s"], whole["window_start_s"])
    assert len(whole["window_start_s"]) == 9                        # 0, 0.5, ..., 4.0 s
    np.testing.assert_allclose(blocks["embedding"], whole["embedding"], rtol=1e-3, atol=1e-3)
