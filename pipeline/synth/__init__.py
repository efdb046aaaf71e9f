"""Synthetic 360° audio-visual scenes with exact ground truth (see ``docs/synthetic.md``).

Stages, one module each, every one a pure function of the ground-truth record:

- :mod:`pipeline.synth.scenes`     sample a scene from a seed -> ground-truth dict (JSON-able).
- :mod:`pipeline.synth.render`     equirectangular frames and label maps from the ground truth.
- :mod:`pipeline.synth.audio`      class sound signatures, diffuse ambience, FOA (ambiX) mix.
- :mod:`pipeline.synth.write`      mp4 (H.264 + AAC) / mkv (H.264 + PCM) through ffmpeg, no remix.
- :mod:`pipeline.synth.eigenscape` EigenScape-layout scene recordings, 4th-order ambiX WAV.
- :mod:`pipeline.synth.cli`        ``python -m pipeline.synth.cli videos|eigenscape``.

Spatial conventions are those of ``docs/CONVENTIONS.md``.
"""
