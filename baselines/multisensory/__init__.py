"""Owens & Efros (2018) multisensory baseline: audio-visual synchronisation pretext with an
early-fusion network, CAM sound-source localisation and on/off-screen separation.

Modules: ``config`` (dataclasses), ``data`` (sync pairs from shards), ``model`` (fused
network), ``cam`` (localisation on the crop and the sphere), ``separation`` (u-nets, losses,
SDR metrics), ``train`` (``python -m baselines.multisensory.train --config ...``).
"""
