"""Downstream evaluation of trained checkpoints, one module per task (each a CLI):

- :mod:`evals.audio.binary`        binary AVC / AVSA on frozen features (Morgado et al.
  2020, Table 1) -> ``runs/<name>/eval_binary.json``.
- :mod:`evals.audio.scenes`    acoustic scene classification on EigenScape with frozen
  audio embeddings vs log-mel and DirAC baselines (Wang et al. 2022, Table 2)
  -> ``eval_eigenscape.json`` + ``eigenscape_confusion.png``.
- :mod:`evals.av.localize`      audio-visual localisation maps and hit rate
  -> ``eval_localize.json`` + ``localize/*.png``.
- :mod:`evals.audio.embed`         audio embeddings of a folder of ambisonic recordings
  -> HDF5.
- :mod:`evals.results_table` every run's scores next to the published numbers
  -> Markdown.

Shared pieces: :mod:`evals.frozen` (checkpoint -> frozen encoders with the exact
audio input and normalisation of training; FOA reading and resampling; shard reading) and
:mod:`evals.audio.spatial_stats` (baseline descriptors). Nothing is imported here, so
``results_table`` stays free of torch.
"""
