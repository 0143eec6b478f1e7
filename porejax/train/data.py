"""Training data and compatibility: what the step samples from, the held-out region, the data record of
porejax.json (fingerprints), and whether a checkpoint may be resumed or a generator started from."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from porejax import checkpoint, dataset, slices
from porejax.errors import PorejaxError
from porejax.models import ModelConfig
from porejax.train.config import MIXED, TrainConfig, recipe_changes
from porejax.train.judges import VOLUME_KEY, MixedSpec
from porejax.volume import PhaseMap


def data_fingerprint(volumes: Sequence[np.ndarray], sources: Sequence[str] | None = None) -> list[dict]:
    """Per volume: sha256 of its bytes (C order), shape, dtype, label values and (optional) source name."""
    out = []
    for i, volume in enumerate(volumes):
        volume = np.ascontiguousarray(volume)
        out.append(
            {
                "source": None if sources is None else str(sources[i]),
                "sha256": hashlib.sha256(volume.tobytes()).hexdigest(),
                "shape": list(volume.shape),
                "dtype": str(volume.dtype),
                "labels": [int(v) for v in np.unique(volume)],
            }
        )
    return out


def _same_data(a: dict, b: dict) -> bool:
    def content(record):
        keys = ("sha256", "shape", "labels")
        images = record.get("slices", {}).get("images", {})
        return (
            [{k: v[k] for k in keys} for v in record["volumes"]],
            record.get("holdout"),
            record.get("slices", {}).get("discriminators"),
            {name: [{k: v[k] for k in keys} for v in found] for name, found in images.items()},
        )

    return content(a) == content(b)


def training_data(
    volumes: Sequence[np.ndarray],
    images: slices.ImageSets | None,
    phase_map: PhaseMap,
    model_config: ModelConfig,
    config: TrainConfig,
    sources,
) -> tuple[Any, dict, str, dict]:
    """(sampling spec, host arrays the step samples from, a description, the data record of porejax.json).

    Holds out the last `config.holdout` x-slices of every volume."""
    holdout = {
        "axis": "x",
        "slices": config.holdout,
        "regions": [[int(v.shape[0]) - config.holdout, int(v.shape[0])] for v in volumes],
    }
    train_parts = [dataset.split_holdout(v, config.holdout, axis=0)[0] for v in volumes]
    if config.discriminator == "volume":
        if images is not None:
            raise PorejaxError(
                "2D images train slice discriminators: use --discriminator slices (an image per "
                "axis) or shared-slices (one image set), or give 3D volumes with --data"
            )
        spec, arrays, described = _crops(train_parts, phase_map, model_config, config)
        return spec, arrays, described, {"volumes": data_fingerprint(volumes, sources), "holdout": holdout}
    if config.discriminator == MIXED:
        return _mixed(volumes, images, train_parts, phase_map, model_config, config, sources, holdout)
    if config.sampling != "random" or config.augment:
        raise PorejaxError(
            "slice discriminators sample random slices without augmentation: drop --sampling strided and --augment"
        )
    if images is not None and config.holdout:
        raise PorejaxError(
            "--holdout applies to 3D volumes, not to 2D images: drop it (hold out part of an image "
            "by cropping the image)"
        )
    sets, spec, arrays = _slice_data(config.discriminator, train_parts, images, phase_map, model_config, config)
    names = sources if isinstance(sources, Mapping) else {}
    fingerprints = {} if images is None else {name: data_fingerprint(sets[name], names.get(name)) for name in spec.keys}
    data = {
        "volumes": data_fingerprint(volumes, None if images is not None else sources),
        "holdout": holdout,
        "slices": {"discriminators": list(spec.keys), "images": fingerprints},
    }
    planes = {key: ", ".join(f"{len(s)} of {s.shape[1]}x{s.shape[2]}" for s in sets[key]) for key in spec.keys}
    described = (
        f"slice discriminator(s) {list(spec.keys)} on {spec.crop}^2 slices ({spec.per_volume} per "
        f"generated volume and axis) of {'images' if images is not None else 'the volumes'} {planes}"
    )
    return spec, arrays, described, data


def _mixed(volumes, images, train_parts, phase_map, model_config, config, sources, holdout):
    """training_data's result for a 3D discriminator on crops beside slice discriminators of the volumes."""
    if images is not None or not len(volumes):
        raise PorejaxError(
            f"--discriminator {MIXED} judges 3D crops and 2D slices of 3D volumes: give the volumes with --data "
            "(2D images train slice discriminators only: --discriminator slices)"
        )
    crop_spec, crop_arrays, described = _crops(train_parts, phase_map, model_config, config)
    _, slice_spec, slice_arrays = _slice_data("slices", train_parts, None, phase_map, model_config, config)
    data = {
        "volumes": data_fingerprint(volumes, sources),
        "holdout": holdout,
        "slices": {"discriminators": [VOLUME_KEY, *slice_spec.keys], "images": {}},
    }
    described += (
        f", and {slice_spec.crop}^2 slices of them ({slice_spec.per_volume} per generated volume and axis) for x, y, z"
    )
    arrays = {VOLUME_KEY: crop_arrays, "slices": slice_arrays}
    return MixedSpec(crop_spec, slice_spec), arrays, described, data


def _slice_data(layout, train_parts, images, phase_map, model_config, config):
    """(image sets, SliceSpec, host arrays) of `layout`'s slice discriminators, from the volumes or images."""
    sets = slices.image_sets(layout, train_parts, images)
    per_volume = config.slices_per_volume or model_config.crop_size
    return (sets, *slices.prepare(sets, phase_map, model_config.crop_size, config.batch_size, per_volume))


def _crops(parts: Sequence[np.ndarray], phase_map: PhaseMap, model_config: ModelConfig, config: TrainConfig):
    """(CropSpec, host arrays, description) of 3D crops of the training parts of the volumes."""
    stack, shapes = dataset.prepare(parts, phase_map, model_config.crop_size)
    spec = dataset.CropSpec(
        model_config.crop_size,
        config.batch_size,
        phase_map.n_phases,
        shapes,
        config.sampling,
        config.stride,
        config.augment,
    )
    dataset.check_spec(spec)
    return spec, dataset.device_arrays(stack, spec), f"training volume(s) {shapes}, {spec.crop}^3 crops"


def check_resumable(
    workdir: Path, meta: dict, model_config: ModelConfig, phase_map: PhaseMap, config: TrainConfig, data: dict
) -> None:
    """Refuse to resume a checkpoint trained with another model, phases, data or recipe (one line naming all)."""
    if "train" not in meta or "data" not in meta:
        raise PorejaxError(f"{workdir} holds a checkpoint not written by `porejax train`: choose another --workdir")
    problems = []
    if ModelConfig.from_dict(meta["model"]) != model_config:
        problems.append(f"model {meta['model']} vs now {model_config.to_dict()} (check --preset)")
    if meta["phase_map"]["labels"] != list(phase_map.labels):
        problems.append(f"phase labels {meta['phase_map']['labels']} vs now {list(phase_map.labels)}")
    if not _same_data(meta["data"], data):
        problems.append("the training data differ (volume bytes or holdout)")
    problems += recipe_changes(TrainConfig(**meta["train"]), config)
    if problems:
        raise PorejaxError(
            f"cannot resume {workdir}: its checkpoint was trained differently: "
            f"{'; '.join(problems)}: use the original settings or another --workdir"
        )


def warm_start_source(source: str | os.PathLike, model_config: ModelConfig, phase_map: PhaseMap) -> dict:
    """{"checkpoint", "step"} of the generator a new run starts from, after checking it fits."""
    meta = checkpoint.read_metadata(source)
    other, other_phases = checkpoint.model_and_phases(meta)
    mine = (model_config.generator_layers, model_config.latent_channels)
    if (other.generator_layers, other.latent_channels) != mine:
        raise PorejaxError(
            f"cannot start from the generator in {source}: its layers (channels, kernel, stride, "
            f"padding) {other.generator_layers} and latent channels {other.latent_channels} differ "
            f"from this model's {mine[0]} and {mine[1]}: choose a preset with the same generator"
        )
    if list(other_phases.labels) != list(phase_map.labels):
        raise PorejaxError(
            f"cannot start from the generator in {source}: its phase labels "
            f"{list(other_phases.labels)} differ from the data's {list(phase_map.labels)}"
        )
    step = checkpoint.latest_step(source)
    if step is None:
        raise PorejaxError(f"{source} has no saved step to start from")
    return {"checkpoint": str(source), "step": step}
