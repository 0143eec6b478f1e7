"""`train()`: a locked workdir, the run's record (porejax.json), the start state (fresh, resumed or warm
started), the loop of jitted steps, the log, the quick evaluations and the checkpoints."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import jax
import numpy as np
from jax.sharding import Mesh

from porejax import checkpoint, slices
from porejax.errors import PorejaxError
from porejax.latents import training_latent
from porejax.lock import workdir_lock
from porejax.models import ModelConfig
from porejax.train.config import TrainConfig, histories
from porejax.train.data import check_resumable, training_data, warm_start_source
from porejax.train.distributed import make_mesh, replicate
from porejax.train.monitoring import LOG_FILE, SAMPLES_DIR, append_log, progress_line, quick_evaluation, read_log
from porejax.train.monitoring import real_reference
from porejax.train.state import TrainState, frozen_generator, start_state, with_generator
from porejax.train.steps import compile_step
from porejax.volume import PhaseMap


def train(
    volumes: Sequence[np.ndarray],
    phase_map: PhaseMap,
    workdir: str | os.PathLike,
    model_config: ModelConfig,
    config: TrainConfig,
    *,
    resume: bool = False,
    preset: str | None = None,
    sources: Sequence[str] | None = None,
    devices: Sequence[jax.Device] | None = None,
    generator_from: str | os.PathLike | None = None,
    progress: bool = True,
    images: slices.ImageSets | None = None,
) -> dict:
    """Train on label `volumes` (original label values, mapped by `phase_map`) into `workdir`.

    With `config.discriminator` "slices" or "shared-slices" the discriminators judge 2D slices
    (`porejax.train.judges`): of the `volumes`, or of 2D label `images` ({"xyz": stacks} or {"x", "y", "z"},
    see `porejax.slices`; `volumes` then empty, `sources` optionally {key: names}). With "volume+slices" a 3D
    discriminator judges crops of the `volumes` beside slice discriminators of their slices.

    Holds out the last `config.holdout` x-slices of every volume. Writes WORKDIR/porejax.json (model,
    PhaseMap, train config, data fingerprint and held-out region), WORKDIR/checkpoints/<step>/ (generator
    with standing statistics + full train state) every `config.checkpoint_every` steps and at the end,
    WORKDIR/log.jsonl (every `log_every` steps; with "eval" every `eval_every`; "time" is wall seconds
    since the run started, continued by a resumed run from its checkpoint's last record) and
    WORKDIR/samples/step_*.png. `resume`: continue from the newest checkpoint, whose model, PhaseMap, data
    and recipe must match, except the learning rate and the EMA decay, which may change (recorded in
    porejax.json under "lr_history" and "ema_decay_history"; an average started on resume starts from the
    weights of that step). With `config.ema_decay` > 0 the saved generators hold the moving average of
    the generator's weights (with its own standing statistics). `devices`: the mesh (default all).
    `generator_from`: a checkpoint directory whose newest generator (same generator network and phases) a
    new run starts from, with a fresh discriminator and optimiser (e.g. a deeper discriminator on larger
    crops); recorded in porejax.json under "warm_start". Returns a summary dict.

    The run holds WORKDIR/train.lock (`porejax.lock`): a second run into the same workdir is refused while
    this one lives. `resume` into a missing workdir is an error; into one without a checkpoint yet (a run
    killed before its first save) it starts from step 0, saying so. Temporary folders of saves that failed
    or were killed are removed first. A failed save (e.g. a full disk) leaves the earlier steps as they were.
    """
    workdir = Path(workdir)
    if resume and not workdir.is_dir():
        raise PorejaxError(
            f"cannot resume {workdir}: it does not exist: check the path, or drop --resume to start a new run there"
        )
    is_main = jax.process_index() == 0
    with (
        workdir_lock(workdir) if is_main else contextlib.nullcontext(),
        checkpoint.Checkpoints(workdir, keep_period=config.keep_every) as store,
    ):
        for partial in store.remove_partial() if is_main else []:
            print(f"porejax train: removed {partial}, the unfinished save of an earlier run", file=sys.stderr)
        model_config, config = _checked(model_config, config)
        mesh = make_mesh(devices)
        if config.batch_size % mesh.size:
            raise PorejaxError(
                f"batch size {config.batch_size} is not divisible by the {mesh.size} devices: "
                f"use a multiple of {mesh.size}"
            )
        run = _Run(store, model_config, phase_map, config, mesh, progress)
        spec, host_arrays, described, data = training_data(volumes, images, phase_map, model_config, config, sources)
        start_step, warm_start = run.record(resume, preset, data, generator_from)
        state = start_state(model_config, config, store, start_step, mesh)
        if start_step is None and warm_start is not None:
            _, variables, _ = checkpoint.restore_generator(warm_start["checkpoint"], warm_start["step"])
            state = with_generator(state, variables, mesh)
        return run.loop(state, spec, replicate(host_arrays, mesh), described, start_step)


def _checked(model_config: ModelConfig, config: TrainConfig) -> tuple[ModelConfig, TrainConfig]:
    """The configs a run trains with: Adam defaults filled in, a per-sample critic for the gradient penalty;
    refuses training latents that cannot make crop-size volumes."""
    config = config.resolved()
    if config.loss == "wgan-gp" and model_config.d_norm == "batch":
        model_config = dataclasses.replace(model_config, d_norm="layer")  # the penalty needs a per-sample critic
    training_latent(model_config, config.latent)
    return model_config, config


@dataclasses.dataclass
class _Run:
    """One run in a locked workdir whose saved steps `store` manages."""

    store: checkpoint.Checkpoints
    model_config: ModelConfig
    phase_map: PhaseMap
    config: TrainConfig
    mesh: Mesh
    progress: bool
    records: list[dict] = dataclasses.field(default_factory=list)  # the log up to the start step

    @property
    def workdir(self) -> Path:
        return self.store.workdir

    @property
    def is_main(self) -> bool:
        return jax.process_index() == 0

    def say(self, line: str) -> None:
        if self.progress and self.is_main:
            print(line, file=sys.stderr, flush=True)

    def record(self, resume: bool, preset: str | None, data: dict, generator_from) -> tuple[int | None, dict | None]:
        """Check the workdir's run (resume rules), write porejax.json and the log up to the start step;
        returns (the step to start from or None, the warm start record or None)."""
        workdir, config = self.workdir, self.config
        saved = self.store.steps() if (workdir / checkpoint.METADATA_FILE).exists() else []
        start_step = saved[-1] if saved else None
        if resume and start_step is None:
            self.say(f"porejax train: {workdir} holds no checkpoint yet: starting from step 0")
        old_meta, warm_start = None, None
        if start_step is not None:
            if not resume:
                raise PorejaxError(
                    f"{workdir} already holds a training run (step {start_step}): pass --resume to "
                    "continue it, or choose another --workdir"
                )
            old_meta = checkpoint.read_metadata(workdir)
            check_resumable(workdir, old_meta, self.model_config, self.phase_map, config, data)
            warm_start = old_meta.get("warm_start")
        elif generator_from is not None:
            warm_start = warm_start_source(generator_from, self.model_config, self.phase_map)
        self.records = read_log(workdir / LOG_FILE, start_step or 0)
        if self.is_main:
            extra = {"warm_start": warm_start} if warm_start else {}
            checkpoint.write_metadata(
                workdir,
                self.model_config,
                self.phase_map,
                train=config.to_dict(),
                data=data,
                preset=preset,
                devices=self.mesh.size,
                **histories(old_meta, config, start_step),
                **extra,
            )
            (workdir / SAMPLES_DIR).mkdir(exist_ok=True)
            (workdir / LOG_FILE).write_text("".join(json.dumps(r) + "\n" for r in self.records))
        return start_step, warm_start

    def loop(self, state: TrainState, spec, arrays: dict, described: str, last_saved: int | None) -> dict:
        """Steps up to `config.steps`: log, evaluate and save on their cadence; returns the summary."""
        config, workdir = self.config, self.workdir
        time_offset, t_start = (self.records[-1]["time"] if self.records else 0.0), time.perf_counter()
        step, compile_start = int(state.step), time.perf_counter()
        step_fn = compile_step(self.model_config, config, spec, self.mesh, state, arrays)
        warmup = config.discriminator_warmup if step < config.discriminator_warmup else 0
        warmup_fn = compile_step(self.model_config, config, spec, self.mesh, state, arrays, False) if warmup else None
        compile_s = time.perf_counter() - compile_start
        real = real_reference(arrays, spec, config.seed)
        self.say(
            f"porejax train: {workdir}, {self.mesh.size} device(s), {described}, batch {config.batch_size}, "
            f"loss {config.loss}, from step {step} to {config.steps}; step compiled in {compile_s:.1f} s"
            + (f"; steps up to {warmup} train the discriminator only" if warmup else "")
        )
        metrics, rate, window = {}, float("nan"), (step, time.perf_counter())
        pending = []  # (step, metrics on the device) not yet read: reading them waits for the step to finish
        while step < config.steps:
            state, step_metrics = (warmup_fn if step < warmup else step_fn)(state, arrays)
            step += 1
            pending.append((step, step_metrics))
            final = step == config.steps
            eval_due = step % config.eval_every == 0 or final
            save_due = step % config.checkpoint_every == 0 or final
            log_due = step % config.log_every == 0 or eval_due
            if not (log_due or save_due):
                continue  # the next step is dispatched while this one runs
            metrics, pending = self.checked_metrics(pending, last_saved), []
            frozen = frozen_generator(self.model_config, state, config, self.mesh) if (eval_due or save_due) else None
            if log_due:
                now = time.perf_counter()
                rate, window = (step - window[0]) / (now - window[1]), (step, now)
                elapsed = round(time_offset + now - t_start, 3)
                self.log(step, metrics, elapsed, rate, frozen, real, eval_due)
            if save_due:
                self.store.save(step, generator=frozen, state=state.to_dict())
                last_saved = step
        return {
            "workdir": str(workdir),
            "step": step,
            "metrics": metrics,
            "compile_s": compile_s,
            "steps_per_s": rate,
            "last_checkpoint": last_saved,
        }

    def checked_metrics(self, pending: list[tuple[int, dict]], last_saved: int | None) -> dict:
        """The last of the `pending` steps' metrics as floats, read from the device in one transfer; a
        non-finite value in any of them stops the run at the first such step, naming the last good checkpoint
        (saves happen only after this check)."""
        for step, metrics in jax.device_get(pending):
            metrics = {k: float(v) for k, v in metrics.items()}
            if not all(math.isfinite(v) for v in metrics.values()):
                values = ", ".join(f"{k}={v:.4g}" for k, v in metrics.items())
                raise PorejaxError(
                    f"non-finite loss at step {step} ({values}); last good checkpoint: step {last_saved} "
                    f"in {self.workdir}: resume from it with --resume, or try a lower --lr or --loss wgan-gp"
                )
        return metrics

    def log(self, step, metrics, elapsed, rate, frozen, real, eval_due) -> None:
        """Append the step's record (with the quick evaluation when due) to the log and the terminal."""
        if not self.is_main:
            return
        record = {"step": step, **{k: round(v, 6) for k, v in metrics.items()}, "time": elapsed}
        record["steps_per_s"] = round(rate, 4)
        if eval_due:
            path = self.workdir / SAMPLES_DIR / f"step_{step:06d}.png"
            record["eval"] = quick_evaluation(self.model_config, self.phase_map, frozen, real, self.config, path, step)
        append_log(self.workdir / LOG_FILE, record)
        self.say(progress_line(record, self.config))
