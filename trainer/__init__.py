"""Lean PyTorch trainer for audio-visual spatial alignment; streams the HDF5 shards."""
