"""What the discriminators judge: the one place where training on 3D crops and on 2D slices differ.

A judge makes the real samples of a step (from the training data) and the fake ones (from a batch of
generated volumes), as one batch per discriminator, and applies discriminator i in training mode:

- `VolumeJudge`: one 3D discriminator; real: `batch_size` crops of the training volumes (each device cuts
  and encodes only its own share of the batch, `shard_map` over "data": a batch is sampled once across the
  processes and equals the single-device batch exactly); fake: the generated volumes themselves.
- `SliceJudge` (SliceGAN's method): one discriminator per slicing direction x, y, z (or one shared by the
  three); real: random slices of its images; fake: `per_volume` slices normal to that direction of every
  generated volume (all of them by default, or a random subset picked with `fold_in(key, 1)` of the key
  the batch's latents came from).

The steps (`porejax.train.steps`) sum the discriminators' losses over the judges, so with one shared
slice discriminator its gradient is the sum of the three directions' gradients.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from porejax import dataset, slices
from porejax.models import Discriminator, ModelConfig, SliceDiscriminator


@dataclasses.dataclass(frozen=True)
class VolumeJudge:
    model_config: ModelConfig
    spec: dataset.CropSpec
    mesh: Mesh

    @property
    def count(self) -> int:
        return 1

    def real(self, arrays: dict, key: jax.Array, data_key: jax.Array, index: jax.Array) -> list[jax.Array]:
        """[one-hot crops (B, S, S, S, C)] of sub-step `index` (strided epochs are ordered by `data_key`)."""
        cut = jax.shard_map(
            lambda a, origins, keys: dataset.crops_at(a, self.spec, origins, keys),
            mesh=self.mesh,
            in_specs=(PartitionSpec(), PartitionSpec("data"), PartitionSpec("data")),
            out_specs=PartitionSpec("data"),
        )
        return [cut(arrays, *dataset.batch_draws(arrays, self.spec, key, data_key, index))]

    def fake(self, volumes: jax.Array, key: jax.Array) -> list[jax.Array]:
        """[the generated volumes (B, S, S, S, C)]; `key` is unused."""
        return [volumes]

    def apply(self, params: Any, stats: Any, i: int, x: jax.Array) -> tuple[jax.Array, Any]:
        """The discriminator in training mode: (logits (B,), updated running statistics)."""
        out, upd = Discriminator(self.model_config).apply(
            {"params": params, "batch_stats": stats}, x, train=True, mutable=["batch_stats"]
        )
        return out, upd.get("batch_stats", stats)


@dataclasses.dataclass(frozen=True)
class SliceJudge:
    model_config: ModelConfig
    spec: slices.SliceSpec
    mesh: Mesh

    @property
    def count(self) -> int:
        return len(self.spec.pairs())

    def _constrain(self, x: jax.Array) -> jax.Array:
        return jax.lax.with_sharding_constraint(x, NamedSharding(self.mesh, PartitionSpec("data")))

    def real(self, arrays: dict, key: jax.Array, data_key: jax.Array, index: jax.Array) -> list[jax.Array]:
        """Per direction, random one-hot slices (N, S, S, C) of its images (`data_key`, `index` unused)."""
        pairs = self.spec.pairs()
        keys = jax.random.split(key, len(pairs))
        return [self._constrain(slices.sample_real(arrays[name], self.spec, k)) for (name, _), k in zip(pairs, keys)]

    def fake(self, volumes: jax.Array, key: jax.Array) -> list[jax.Array]:
        """Per direction, `per_volume` slices (B * per_volume, S, S, C) normal to it of every volume."""
        pairs = self.spec.pairs()
        keys = jax.random.split(jax.random.fold_in(key, 1), len(pairs))
        per_volume = self.spec.per_volume
        return [
            self._constrain(slices.generated_slices(volumes, axis, per_volume, k)) for (_, axis), k in zip(pairs, keys)
        ]

    def apply(self, params: dict, stats: dict, i: int, x: jax.Array) -> tuple[jax.Array, dict]:
        """Discriminator of direction i on slices x: (logits (N,), updated statistics of all)."""
        name = self.spec.pairs()[i][0]
        out, upd = SliceDiscriminator(self.model_config).apply(
            {"params": params[name], "batch_stats": stats[name]}, x, train=True, mutable=["batch_stats"]
        )
        return out, {**stats, name: upd.get("batch_stats", stats[name])}


VOLUME_KEY = "volume"  # the 3D discriminator's entry in a MixedJudge's params and statistics


@dataclasses.dataclass(frozen=True)
class MixedSpec:
    """3D crops and 2D slices of the same training volumes, for a `MixedJudge`."""

    crops: dataset.CropSpec
    slices: slices.SliceSpec


@dataclasses.dataclass(frozen=True)
class MixedJudge:
    volume: VolumeJudge
    planes: SliceJudge

    @property
    def count(self) -> int:
        return 1 + self.planes.count

    def real(self, arrays: dict, key: jax.Array, data_key: jax.Array, index: jax.Array) -> list[jax.Array]:
        """[3D crops (B, S, S, S, C)] + per direction its real slices (N, S, S, C)."""
        k_volume, k_planes = jax.random.split(key)
        return self.volume.real(arrays[VOLUME_KEY], k_volume, data_key, index) + self.planes.real(
            arrays["slices"], k_planes, data_key, index
        )

    def fake(self, volumes: jax.Array, key: jax.Array) -> list[jax.Array]:
        """[the generated volumes] + per direction slices of them."""
        return self.volume.fake(volumes, key) + self.planes.fake(volumes, key)

    def apply(self, params: dict, stats: dict, i: int, x: jax.Array) -> tuple[jax.Array, dict]:
        """Discriminator i (0: the 3D one, 1..3: direction i - 1) on x: (logits, updated statistics of all)."""
        if i == 0:
            out, new = self.volume.apply(params[VOLUME_KEY], stats[VOLUME_KEY], 0, x)
            return out, {**stats, VOLUME_KEY: new}
        return self.planes.apply(params, stats, i - 1, x)


Spec = dataset.CropSpec | slices.SliceSpec | MixedSpec


def judge_for(model_config: ModelConfig, spec: Spec, mesh: Mesh):
    """The judge of a sampling spec: crops for a CropSpec, slices for a SliceSpec, both for a MixedSpec."""
    if isinstance(spec, MixedSpec):
        return MixedJudge(VolumeJudge(model_config, spec.crops, mesh), SliceJudge(model_config, spec.slices, mesh))
    return (SliceJudge if isinstance(spec, slices.SliceSpec) else VolumeJudge)(model_config, spec, mesh)
