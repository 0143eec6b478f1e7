"""Presets: a network (ModelConfig fields) and its training recipe (TrainConfig fields) under one name.

Each preset is plain data (keyword arguments of `porejax.models.ModelConfig` and
`porejax.train.TrainConfig`) with a one-line description, so the command line builds its `--preset`
choices and help from this table without importing JAX. `model(name, n_phases)` and `recipe(name)` build
the configs. Measurements behind the CPU presets: experiments/results/cathode/README.md.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from porejax.errors import PorejaxError


@dataclasses.dataclass(frozen=True)
class Preset:
    about: str  # one line for the command line's help
    model: dict[str, Any]  # ModelConfig fields (n_phases comes from the data)
    train: dict[str, Any]  # TrainConfig fields


_CPU_NETS = {"g_widths": (64, 32, 16), "d_widths": (16, 32, 64)}
_CPU64_NETS = {"g_widths": (64, 32, 16), "d_widths": (8, 16, 32, 64)}
_SLICES_CPU_NETS = {"g_widths": (64, 32, 16), "d_widths": (16, 32, 64, 128)}
# about an hour on two CPU cores
_CPU_RECIPE = {
    "batch_size": 8,
    "lr": 1e-4,
    "steps": 3000,
    "eval_every": 100,
    "checkpoint_every": 50,
    "keep_every": 500,
    "standing_batches": 16,
}
# seconds per step: tests and the demo
_TINY_RECIPE = {
    "batch_size": 8,
    "lr": 2e-4,
    "steps": 300,
    "log_every": 10,
    "eval_every": 100,
    "checkpoint_every": 100,
    "eval_samples": 4,
    "standing_batches": 4,
}
# WGAN-GP (SliceGAN's settings) with slice critics; 16 random slices per generated volume and axis
_SLICES_CPU_RECIPE = {
    **_CPU_RECIPE,
    "batch_size": 2,
    "loss": "wgan-gp",
    "lr": None,
    "discriminator": "slices",
    "slices_per_volume": 16,
}

PRESETS: dict[str, Preset] = {
    "paper": Preset(
        "the paper's networks and recipe (64^3 crops, batch 32, stride-8 epochs); for a GPU",
        {},
        {"batch_size": 32, "sampling": "strided", "steps": 100_000, "eval_every": 1000, "checkpoint_every": 1000},
    ),
    "cpu": Preset(
        "two CPU cores: one stride-2 layer less (32^3 crops, period unit 8), reduced widths", _CPU_NETS, _CPU_RECIPE
    ),
    "cpu-smooth": Preset(
        "cpu with a 3^3 output layer (8 channels) after the last stride-2 layer, against the checkerboard",
        {**_CPU_NETS, "head_width": 8},
        _CPU_RECIPE,
    ),
    "cpu64": Preset(
        "the cpu generator judged on 64^3 crops by a discriminator one layer deeper (whole particles)",
        _CPU64_NETS,
        {**_CPU_RECIPE, "batch_size": 4},
    ),
    "cpu64-smooth": Preset(
        "the cpu-smooth generator (output head) judged on 64^3 crops",
        {**_CPU64_NETS, "head_width": 8},
        {**_CPU_RECIPE, "batch_size": 4},
    ),
    "tiny": Preset(
        "seconds per step (32^3 crops): tests and the demo",
        {"g_widths": (16, 8, 8), "d_widths": (4, 8, 16)},
        _TINY_RECIPE,
    ),
    "slicegan": Preset(
        "from 2D images, for a GPU: the paper's generator, SliceGAN's critics (64^2 slices, no normalisation) "
        "and recipe (WGAN-GP, lambda 10, 5 critic steps, Adam 1e-4, betas (0, 0.9), batch 8, every slice)",
        {"d_widths": (64, 128, 256, 512), "d_norm": "none"},
        {
            "batch_size": 8,
            "loss": "wgan-gp",
            "discriminator": "slices",
            "steps": 20_000,
            "eval_every": 1000,
            "checkpoint_every": 500,
            "keep_every": 5000,
        },
    ),
    "slices-cpu": Preset(
        "from 2D images, two CPU cores: the cpu generator making 64^3 volumes, judged on 64^2 slices",
        _SLICES_CPU_NETS,
        _SLICES_CPU_RECIPE,
    ),
    "slices-cpu-smooth": Preset(
        "slices-cpu with the cpu-smooth generator (output head): a cpu-smooth generator (--generator-from) "
        "judged on 64^2 slices of its 64^3 volumes, whole particle cross-sections",
        {**_SLICES_CPU_NETS, "head_width": 8},
        _SLICES_CPU_RECIPE,
    ),
    "slices-tiny": Preset(
        "from 2D images, seconds per step: the tiny generator, 32^2 slices",
        {"g_widths": (16, 8, 8), "d_widths": (8, 16, 32)},
        {**_TINY_RECIPE, "batch_size": 4, "discriminator": "slices"},
    ),
}
DEFAULT = "cpu"  # `porejax train --data`
DEFAULT_SLICES = "slices-cpu"  # `porejax train --slices...`


def get(name: str) -> Preset:
    if name not in PRESETS:
        raise PorejaxError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}")
    return PRESETS[name]


def describe() -> str:
    """ "name: description" of every preset, for command-line help."""
    return "; ".join(f"{name}: {p.about}" for name, p in PRESETS.items())


def model(name: str, n_phases: int, crop: int | None = None, precision: str | None = None):
    """The network of preset `name` for `n_phases` (a ModelConfig); `crop`, if given, must equal its crop size
    (the discriminator's depth sets it); `precision`: the convolutions' compute dtype ("float32", the default,
    or "bfloat16": mixed precision)."""
    from porejax.models import ModelConfig

    fields = {**get(name).model, "n_phases": n_phases}
    config = ModelConfig(**fields, **({} if precision is None else {"compute_dtype": precision}))
    if crop is not None and crop != config.crop_size:
        others = ", ".join(f"{other} {ModelConfig(**p.model).crop_size}" for other, p in PRESETS.items())
        raise PorejaxError(
            f"--crop {crop} does not match the {name} preset, which trains on "
            f"{config.crop_size}^3 crops (crop size is set by the network depth; presets: {others}): "
            "drop --crop or choose a preset with that crop size"
        )
    return config


def recipe(name: str, **overrides: Any):
    """The training recipe of preset `name` (a TrainConfig) with the non-None `overrides` applied."""
    from porejax.train import TrainConfig

    return TrainConfig(**{**get(name).train, **{k: v for k, v in overrides.items() if v is not None}})
