"""Offline preprocessing for audio-visual spatial alignment: 360° clips to sharded HDF5.

Spatial conventions (directions, equirectangular mapping, ambiX ACN/SN3D, rotation order) are
documented in ``docs/CONVENTIONS.md`` and implemented once in :mod:`pipeline.spatial`.
"""
