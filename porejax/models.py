"""The paper's volumetric DC-GAN (Gayon-Lombardo et al. 2020, Table 2), channels last, from a config.

Generator: a stride-1 transposed conv (k=4, p=0) from the latent, then stride-2 transposed convs (k=4,
p=1) that double the size, BatchNorm + ReLU between, softmax over phases at the end. With `head_width`
the last stride-2 layer makes that many channels and a stride-1 3^3 convolution (k=3, p=1) maps them to
the phases: every output voxel then mixes its neighbours from all sub-pixel positions of the stride-2
layer, which damps the position-dependent "checkerboard" of the paper's network. With depth
L = len(g_widths) stride-2 layers, a latent of spatial size a gives a volume of side 2^L (a + 3) with zero
padding (paper: 64 + 16 (a - 1)) and exactly 2^L a with circular padding (periodic in that axis).
Discriminator: stride-2 convs (k=4, p=1) with LeakyReLU 0.2 (normalised after the first), then a k=4
valid conv to one logit per sample; with M = len(d_widths) >= L stride-2 layers it judges crops of side
4 * 2^M (the paper: M = L). SliceDiscriminator: the same network in 2D, judging slices of that side.
Named networks (with their training recipes): `porejax.presets`.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from porejax.errors import PorejaxError
from porejax.nn.layers import Conv3d, ConvTranspose3d, normal_init
from porejax.nn.padding import modes_for

NORMS = ("batch", "layer", "none")
COMPUTE_DTYPES = {"float32": None, "bfloat16": jnp.bfloat16}
BATCH_NORM_MOMENTUM = 0.9  # flax convention: running = momentum * running + (1 - momentum) * batch


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Network shape. The defaults are the paper's (Table 2)."""

    n_phases: int = 3
    latent_channels: int = 100
    g_widths: tuple[int, ...] = (512, 256, 128, 64)
    d_widths: tuple[int, ...] = (16, 32, 64, 128)
    d_norm: str = "batch"  # "batch" (paper), "layer" (for WGAN-GP) or "none"
    head_width: int = 0  # 0: the last stride-2 layer makes the phases (paper); > 0: see the module docstring
    # convolution products: "float32", or "bfloat16" (mixed precision: bfloat16 inputs, float32 weights,
    # float32 accumulation, results and normalisation). The two layers next to the phase probabilities stay
    # float32: the generator's last (its logits) and the discriminator's first (bfloat16 would round fake
    # probabilities near 1 to steps of 2^-8, a difference from the exactly one-hot real crops)
    compute_dtype: str = "float32"

    def __post_init__(self):
        object.__setattr__(self, "g_widths", tuple(int(w) for w in self.g_widths))
        object.__setattr__(self, "d_widths", tuple(int(w) for w in self.d_widths))
        if self.n_phases < 2:
            raise PorejaxError(f"a generator needs at least 2 phases, got n_phases={self.n_phases}")
        if len(self.g_widths) < 1 or len(self.d_widths) < len(self.g_widths):
            raise PorejaxError(
                f"g_widths {self.g_widths} and d_widths {self.d_widths}: the generator needs at "
                "least one layer and the discriminator at least as many (its depth sets the crop "
                "size 4 * 2^len(d_widths))"
            )
        if min(self.g_widths + self.d_widths + (self.latent_channels,)) < 1 or self.head_width < 0:
            raise PorejaxError("network widths and latent channels must be positive (head_width: 0 for none)")
        if self.d_norm not in NORMS:
            raise PorejaxError(f"d_norm must be one of {NORMS}, got {self.d_norm!r}")
        if self.compute_dtype not in COMPUTE_DTYPES:
            raise PorejaxError(f"compute_dtype must be one of {tuple(COMPUTE_DTYPES)}, got {self.compute_dtype!r}")

    @property
    def conv_dtype(self):
        """The dtype convolution inputs are cast to (None: unchanged float32)."""
        return COMPUTE_DTYPES[self.compute_dtype]

    @property
    def period_unit(self) -> int:
        """Output voxels per latent voxel (16 for the paper's depth)."""
        return 2 ** len(self.g_widths)

    @property
    def crop_size(self) -> int:
        """Training sub-volume side, the discriminator's input: 4 * 2^len(d_widths) (64 for the paper). With
        equal depths it is the output of a 1^3 latent with zero padding; a deeper discriminator judges larger
        crops than that, which the generator then makes from periodic latents of side crop / period_unit."""
        return 4 * 2 ** len(self.d_widths)

    @property
    def point_latent_crop(self) -> bool:
        """Whether a 1^3 latent (zero padding, the paper's training latent) gives a crop_size^3 volume."""
        return self.output_side(1, periodic=False) == self.crop_size

    @property
    def generator_layers(self) -> tuple[tuple[int, int, int, int], ...]:
        """Per transposed convolution of the generator: (output channels, kernel, stride, padding)."""
        widths = self.g_widths + ((self.head_width,) if self.head_width else (self.n_phases,))
        layers = tuple((w, 4, 1, 0) if i == 0 else (w, 4, 2, 1) for i, w in enumerate(widths))
        return layers + (((self.n_phases, 3, 1, 1),) if self.head_width else ())

    def output_side(self, latent_side: int, periodic: bool) -> int:
        return self.period_unit * (latent_side if periodic else latent_side + 3)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})


def _batch_norm(train: bool) -> nn.BatchNorm:
    """BatchNorm as PyTorch's (momentum 0.1, eps 1e-5), scale init N(1, 0.02), bias 0."""
    return nn.BatchNorm(
        use_running_average=not train,
        momentum=BATCH_NORM_MOMENTUM,
        epsilon=1e-5,
        scale_init=normal_init(0.02, mean=1.0),
    )


class Generator(nn.Module):
    """z (B, a, a, a, latent_channels) -> phase probabilities (B, D, H, W, n_phases)."""

    config: ModelConfig

    @nn.compact
    def __call__(
        self,
        z: jnp.ndarray,
        train: bool = False,
        periodic: Sequence[bool] = (False, False, False),
        keep: tuple[Sequence[Sequence[int]], jnp.ndarray] | None = None,
    ) -> jnp.ndarray:
        """keep: (lengths, starts), per layer the extent (static ints) and start (int array (layers, 3)) per
        spatial axis of its output to keep (zero padding only): later layers then compute only what the
        kept outputs need (`porejax.generate.layer_crops`)."""
        modes = modes_for(periodic)
        if keep is not None and any(periodic):
            raise PorejaxError("layer crops apply to zero-padded generation only")

        def crop(x, i):
            if keep is None:
                return x
            lengths, starts = keep
            return jax.lax.dynamic_slice(
                x, (0, *(starts[i, a] for a in range(3)), 0), (x.shape[0], *lengths[i], x.shape[-1])
            )

        x, last = z, len(self.config.generator_layers) - 1
        for i, (width, kernel, stride, pad) in enumerate(self.config.generator_layers):
            dtype = None if i == last else self.config.conv_dtype  # the logits: float32 (see ModelConfig)
            x = ConvTranspose3d(width, kernel, stride, pad, dtype=dtype, name=f"deconv{i}")(x, modes)
            x = crop(x if i == last else nn.relu(_batch_norm(train)(x)), i)
        # Align periodic axes with the zero-padded generator on an infinitely tiled latent (whose output
        # index F is natural index F mod period): the periodic volume is then exactly the central crop
        # of the zero-padded generator applied to the latent tiled 3x3x3.
        shift = 3 * self.config.period_unit // 2
        axes = tuple(a + 1 for a, p in enumerate(periodic) if p)
        if axes:
            x = jnp.roll(x, (-shift,) * len(axes), axes)
        return nn.softmax(x, axis=-1)


class Discriminator(nn.Module):
    """x (B, S, S, S, n_phases) with S = crop_size -> one logit per sample (B,)."""

    config: ModelConfig

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        for i, width in enumerate(self.config.d_widths):
            dtype = None if i == 0 else self.config.conv_dtype  # reads phase probabilities: float32 (see ModelConfig)
            x = Conv3d(width, 4, 2, 1, dtype=dtype, name=f"conv{i}")(x)
            if i > 0 and self.config.d_norm == "batch":
                x = _batch_norm(train)(x)
            elif i > 0 and self.config.d_norm == "layer":
                x = nn.LayerNorm(epsilon=1e-5)(x)
            x = nn.leaky_relu(x, 0.2)
        x = Conv3d(1, 4, 1, 0, dtype=self.config.conv_dtype, name=f"conv{len(self.config.d_widths)}")(x)
        return x.reshape(x.shape[0])


class SliceDiscriminator(nn.Module):
    """x (B, S, S, n_phases) slices with S = crop_size -> one logit per slice (B,): the 2D counterpart of
    `Discriminator` (same widths, normalisation and field of view) for training from 2D images
    (`porejax.slices`)."""

    config: ModelConfig

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        def conv(width, stride, pad, dtype, name):
            return nn.Conv(
                width,
                (4, 4),
                stride,
                ((pad, pad), (pad, pad)),
                use_bias=False,
                dtype=dtype,
                kernel_init=normal_init(0.02),
                name=name,
            )

        for i, width in enumerate(self.config.d_widths):
            x = conv(width, 2, 1, None if i == 0 else self.config.conv_dtype, f"conv{i}")(x)
            if i > 0 and self.config.d_norm == "batch":
                x = _batch_norm(train)(x)
            elif i > 0 and self.config.d_norm == "layer":
                x = nn.LayerNorm(epsilon=1e-5)(x)
            x = nn.leaky_relu(x, 0.2)
        x = conv(1, 1, 0, self.config.conv_dtype, f"conv{len(self.config.d_widths)}")(x)
        return x.reshape(x.shape[0]).astype(jnp.float32)


@functools.partial(jax.jit, static_argnums=(0, 1))
def init_slice_discriminators(config: ModelConfig, keys: tuple[str, ...], key: jax.Array) -> dict:
    """Fresh slice discriminators {"params": {name: ...}, "batch_stats": {name: ...}}, one per name in `keys`."""
    x = jnp.zeros((1, config.crop_size, config.crop_size, config.n_phases), jnp.float32)
    found = {name: SliceDiscriminator(config).init(k, x) for name, k in zip(keys, jax.random.split(key, len(keys)))}
    return {
        "params": {name: v["params"] for name, v in found.items()},
        "batch_stats": {name: v.get("batch_stats", {}) for name, v in found.items()},
    }


def generator_batch_statistics(
    config: ModelConfig, params: dict, batch_stats: dict, z: jnp.ndarray, periodic: Sequence[bool]
) -> dict:
    """The generator's BatchNorm batch statistics on latents z (training mode), a tree like `batch_stats`
    ({"mean", "var"} per layer): what standing statistics average over many batches."""
    zero = jax.tree_util.tree_map(jnp.zeros_like, batch_stats)
    _, updated = Generator(config).apply(
        {"params": params, "batch_stats": zero}, z, train=True, periodic=tuple(periodic), mutable=["batch_stats"]
    )
    # from zero running statistics one update leaves (1 - momentum) * (batch statistic)
    return jax.tree_util.tree_map(lambda v: v / (1 - BATCH_NORM_MOMENTUM), updated["batch_stats"])


@functools.partial(jax.jit, static_argnums=0)
def init_generator_variables(config: ModelConfig, key: jax.Array) -> dict:
    """Fresh generator variables {"params", "batch_stats"} (batch_stats may be empty)."""
    g_vars = Generator(config).init(key, jnp.zeros((1, 1, 1, 1, config.latent_channels), jnp.float32))
    return {"params": g_vars["params"], "batch_stats": g_vars.get("batch_stats", {})}


@functools.partial(jax.jit, static_argnums=0)
def init_variables(config: ModelConfig, key: jax.Array) -> tuple[dict, dict]:
    """Fresh (generator, discriminator) variables: {"params", "batch_stats"} each (batch_stats may be empty)."""
    kg, kd = jax.random.split(key)
    x = jnp.zeros((1,) + (config.crop_size,) * 3 + (config.n_phases,), jnp.float32)
    d_vars = Discriminator(config).init(kd, x)
    return (
        init_generator_variables(config, kg),
        {"params": d_vars["params"], "batch_stats": d_vars.get("batch_stats", {})},
    )


def count_params(params) -> int:
    return int(sum(np.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(params)))
