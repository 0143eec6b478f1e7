"""Training: explicit state, one jitted function per step, data parallel, resumable, observable.

    config.py        TrainConfig (recipe and cadence), what a resumed run may change
    state.py         TrainState, initialisation, the optimiser, weight averaging, the frozen generator
    judges.py        what the discriminators judge: 3D crops, 2D slices, or both (the only difference)
    steps.py         the BCE and WGAN-GP steps (top-level functions), jitted and cached per recipe
    distributed.py   the device mesh, replication, joining a multi-process run
    data.py          training data, holdout, data fingerprint, resume and warm-start compatibility
    monitoring.py    quick evaluation, progress line, the log
    loop.py          train()

Latents (training and statistics latents): `porejax.latents`; standing BatchNorm statistics:
`porejax.standing`; presets (networks with their recipes): `porejax.presets`.
"""

from porejax.train.config import CADENCE, RESUME_MAY_CHANGE, TrainConfig
from porejax.train.data import data_fingerprint, training_data
from porejax.train.distributed import initialize_distributed, make_mesh, replicate
from porejax.train.judges import MixedJudge, SliceJudge, VolumeJudge
from porejax.train.loop import train
from porejax.train.monitoring import LOG_FILE, SAMPLES_DIR
from porejax.train.state import TrainState, ema_update, frozen_generator, init_state, start_state
from porejax.train.steps import StepContext, apply_generator, compile_step, generator_update, make_step

__all__ = [
    "CADENCE",
    "LOG_FILE",
    "RESUME_MAY_CHANGE",
    "SAMPLES_DIR",
    "MixedJudge",
    "SliceJudge",
    "StepContext",
    "TrainConfig",
    "TrainState",
    "VolumeJudge",
    "apply_generator",
    "compile_step",
    "data_fingerprint",
    "ema_update",
    "frozen_generator",
    "generator_update",
    "init_state",
    "initialize_distributed",
    "make_mesh",
    "make_step",
    "replicate",
    "start_state",
    "train",
    "training_data",
]
