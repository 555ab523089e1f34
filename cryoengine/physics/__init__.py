"""Pure physics: arrays and value objects in, arrays out (no files, no config, no printing).

Density, CTF and tilt scheme, sample placement and resampling, projection and reconstruction, extraction,
noise, rotations, and the imaging chain that joins them (:mod:`cryoengine.physics.imaging`).
``tests/cryoengine/test_layers.py`` fails if a module here imports file, store or config code.
"""
