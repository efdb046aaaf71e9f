"""Downstream evaluations of the trained video encoder (Morgado et al. 2020, Wang et al. 2022).

- :mod:`evals.video.action_data`       UCF-101 / HMDB-51 as distributed: split files,
  decoded-frame cache, 8-frame clips at 16 fps (random for training, 25 uniform for testing).
- :mod:`evals.video.action`            ``python -m evals.video.action``: frozen
  features + linear classifier (Wang et al. "without fine-tuning") or full fine-tuning (Morgado
  et al.: Adam 1e-4, step decay); clip@1 and video@1 over 25 clips.
- :mod:`evals.video.segmentation`      ``python -m evals.video.segmentation``: an
  FPN head on frozen multi-scale video features (optionally + audio and translation-context
  features), trained on the gnomonic crops stored in shards; label maps projected with the
  crops' own grids; pixel accuracy and mIoU against the majority-class baseline.
- :mod:`pipeline.synth.actions` a synthetic motion-pattern action set written as
  a UCF-101 or HMDB-51 tree, so the loaders and both protocols run end to end without the real
  data sets.
"""
