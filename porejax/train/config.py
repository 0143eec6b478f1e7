"""How to train: the recipe (which fixes the trajectory), the cadence (which may change on resume), and the
rules of what a resumed run may change.

The paper's recipe is the default (Gayon-Lombardo et al. 2020, after PyTorch's DC-GAN): Adam (lr 2e-5,
b1 0.5, b2 0.999) for both networks, binary cross-entropy from logits with one-sided label smoothing
(real 0.9, fake 0, generator target 0.9), k = 2 generator updates per discriminator update. With
`--loss wgan-gp` (Gulrajani et al. 2017): lambda 10, n_critic 5, Adam lr 1e-4, b1 0, b2 0.9.
"""

from __future__ import annotations

import dataclasses

from porejax import dataset, latents, losses, slices
from porejax.errors import PorejaxError

_ADAM_DEFAULTS = {"bce": (2e-5, 0.5, 0.999), "wgan-gp": (1e-4, 0.0, 0.9)}
MIXED = "volume+slices"  # a 3D discriminator on crops beside one slice discriminator per axis
DISCRIMINATORS = ("volume",) + slices.LAYOUTS + (MIXED,)
_AT_LEAST_ONE = (
    "batch_size",
    "g_updates",
    "n_critic",
    "steps",
    "log_every",
    "eval_every",
    "checkpoint_every",
    "eval_samples",
    "standing_batches",
)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How to train. Recipe fields fix the trajectory; cadence fields (`CADENCE`) may change on resume."""

    batch_size: int = 32
    loss: str = "bce"
    lr: float | None = None  # None: the loss's default (bce 2e-5, wgan-gp 1e-4)
    b1: float | None = None  # None: bce 0.5, wgan-gp 0.0
    b2: float | None = None  # None: bce 0.999, wgan-gp 0.9
    g_updates: int = 2  # bce: generator updates per discriminator update (k)
    n_critic: int = 5  # wgan-gp: critic updates per generator update
    gp_weight: float = 10.0  # wgan-gp: lambda
    r1_weight: float = 0.0  # bce: gamma of the R1 penalty gamma / 2 * E ||grad_x D(x)||^2 on real samples (0: off)
    real_label: float = 0.9  # bce: D's target for real crops (one-sided label smoothing)
    fake_label: float = 0.0  # bce: D's target for generated crops
    g_target: float = 0.9  # bce: G's target for D(G(z)) (the paper's code uses the real label)
    latent: str = latents.TRAINING_DEFAULT  # "periodic" (crop-sized, circular) or "point" (paper: 1^3)
    sampling: str = "random"  # "random" or "strided" (the paper's epochs)
    stride: int = 8  # strided sampling: grid spacing in voxels
    augment: bool = False  # random cube symmetries (flips, 90-degree rotations) of real crops
    holdout: int = 0  # slices held out at the end of x of every volume (never trained on)
    seed: int = 0
    steps: int = 1000  # total steps; a resumed run continues up to it
    log_every: int = 10
    eval_every: int = 500
    checkpoint_every: int = 500
    keep_every: int = 0  # also keep the checkpoints of steps that are multiples of this (0: the 3 newest only)
    eval_samples: int = 8  # generated volumes per quick evaluation
    standing_batches: int = 32  # batches of latents for the generator's standing statistics
    ema_decay: float = 0.0  # > 0: generate from an exponential moving average of the generator's weights
    # "volume" (3D crops), "slices" (2D, one per axis), "shared-slices" (2D, one) or "volume+slices" (both: 3D
    # crops and 2D slices of the volumes, judged by four discriminators)
    discriminator: str = "volume"
    slices_per_volume: int = 0  # slice discriminators: random slices per generated volume and axis (0: all)
    # the first steps of a run train only the discriminator(s): a fresh discriminator beside a warm-started
    # generator (--generator-from) learns to judge it before the generator follows its gradients
    discriminator_warmup: int = 0

    def __post_init__(self):
        if self.loss not in losses.LOSSES:
            raise PorejaxError(f"unknown loss {self.loss!r}: choose one of {', '.join(losses.LOSSES)}")
        for name in _AT_LEAST_ONE:
            if int(getattr(self, name)) < 1:
                raise PorejaxError(f"{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.keep_every < 0:
            raise PorejaxError(
                f"keep-every must be 0 (keep only the newest checkpoints) or positive, got {self.keep_every}"
            )
        if not 0.0 <= self.ema_decay < 1.0:
            raise PorejaxError(f"ema-decay must be in [0, 1) (0: no average; typical 0.999), got {self.ema_decay}")
        if self.r1_weight < 0 or (self.r1_weight > 0 and self.loss != "bce"):
            raise PorejaxError(
                f"r1 must be 0 (off) or a positive weight with --loss bce (wgan-gp has its gradient penalty), "
                f"got {self.r1_weight} with loss {self.loss}"
            )
        if self.lr is not None and not self.lr > 0:
            raise PorejaxError(f"learning rate must be positive, got {self.lr}")
        if self.latent not in latents.LATENTS:
            raise PorejaxError(f"latent must be one of {latents.LATENTS}, got {self.latent!r}")
        if self.sampling not in dataset.MODES:
            raise PorejaxError(f"sampling must be one of {dataset.MODES}, got {self.sampling!r}")
        if self.discriminator not in DISCRIMINATORS:
            raise PorejaxError(f"discriminator must be one of {DISCRIMINATORS}, got {self.discriminator!r}")
        if self.discriminator_warmup < 0:
            raise PorejaxError(
                f"discriminator-warmup must be 0 (off) or a number of steps, got {self.discriminator_warmup}"
            )
        if self.slices_per_volume < 0:
            raise PorejaxError(f"slices-per-volume must be 0 (all) or positive, got {self.slices_per_volume}")

    def resolved(self) -> TrainConfig:
        """This config with the loss's default Adam hyperparameters filled in."""
        lr, b1, b2 = _ADAM_DEFAULTS[self.loss]
        return dataclasses.replace(
            self,
            lr=lr if self.lr is None else self.lr,
            b1=b1 if self.b1 is None else self.b1,
            b2=b2 if self.b2 is None else self.b2,
        )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


CADENCE = ("steps", "log_every", "eval_every", "checkpoint_every", "keep_every", "eval_samples", "standing_batches")
# recipe fields a resumed run may change; porejax.json records each one's values as "<name>_history"
RESUME_MAY_CHANGE = ("lr", "ema_decay")


def recipe(config: TrainConfig) -> TrainConfig:
    """The config with cadence fields reset: two configs with the same recipe compile the same step."""
    return dataclasses.replace(config, **{f: getattr(TrainConfig, f) for f in CADENCE})


def recipe_changes(old: TrainConfig, new: TrainConfig) -> list[str]:
    """What differs between two configs' recipes, apart from the fields a resumed run may change."""
    old, new = recipe(old), recipe(new)
    return [
        f"{f.name} {getattr(old, f.name)} vs now {getattr(new, f.name)}"
        for f in dataclasses.fields(old)
        if f.name not in RESUME_MAY_CHANGE and getattr(old, f.name) != getattr(new, f.name)
    ]


def history(meta: dict, name: str, start_step: int, value: float) -> list[list]:
    """[[first step, value], ...] of recipe field `name` (one of RESUME_MAY_CHANGE) in a resumed run."""
    first = [[0, meta["train"].get(name, getattr(TrainConfig, name))]]
    found = [list(entry) for entry in meta.get(f"{name}_history", first) if entry[0] < start_step]
    return found if found and found[-1][1] == value else found + [[start_step, value]]


def histories(meta: dict | None, config: TrainConfig, start_step: int | None) -> dict:
    """{"<name>_history": ...} for porejax.json: the values of RESUME_MAY_CHANGE fields over the run."""
    if meta is None:
        return {f"{name}_history": [[0, getattr(config, name)]] for name in RESUME_MAY_CHANGE}
    return {f"{name}_history": history(meta, name, start_step, getattr(config, name)) for name in RESUME_MAY_CHANGE}
