"""The config builds the physics value objects, and its defaults are the physics defaults."""

from __future__ import annotations

import dataclasses
import inspect

import numpy as np

from cryoengine.config import OpticsSettings, TiltSettings, validate_config
from cryoengine.physics.ctf import draw_ctf_parameters
from cryoengine.physics.imaging import ImagingSettings
from cryoengine.physics.tilt import TiltScheme

CLASSES = {"classes": {"ring": {"kind": "phantom", "shape": "ring"}}}


def test_tilt_settings_build_the_tilt_scheme_with_its_defaults():
    assert TiltSettings().scheme() == TiltScheme()
    custom = TiltSettings(step_deg=6.0, order="sequential", group_size=1).scheme()
    assert custom == TiltScheme(step_deg=6.0, order="sequential", group_size=1)
    assert len(custom.tilt_angles_deg) == 21


def test_optics_defaults_are_those_of_the_ctf_draw():
    draw_defaults = {
        name: p.default
        for name, p in inspect.signature(draw_ctf_parameters).parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    optics = OpticsSettings()
    assert {name: getattr(optics, name) for name in draw_defaults} == draw_defaults


def test_imaging_settings_carry_every_config_value():
    config = validate_config({**CLASSES, "box": 24, "tilt": {"step_deg": 5.0}, "noise": {"realisations": 3}})
    settings = config.imaging_settings(isolation_margin_vox=8)
    assert isinstance(settings, ImagingSettings)
    assert settings.box == 24 and settings.noise_realisations == 3 and settings.isolation_margin_vox == 8
    assert settings.scheme == config.tilt.scheme()
    assert np.isclose(settings.scheme.step_deg, 5.0)
    assert {f.name for f in dataclasses.fields(settings)} >= {"slab_shape_zyx", "defocus_min_um", "backend"}
