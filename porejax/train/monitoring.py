"""Watching a run: the quick evaluation (volume fractions and surface areas of generated volumes against
real crops, and their sample figure), the progress line, and the log WORKDIR/log.jsonl."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from porejax import dataset, figures, metrics, slices
from porejax.generate import FrozenGenerator
from porejax.latents import draw_latents, statistics_latent
from porejax.models import ModelConfig
from porejax.train.config import TrainConfig
from porejax.train.judges import VOLUME_KEY, MixedSpec, Spec
from porejax.volume import PhaseMap

LOG_FILE = "log.jsonl"
SAMPLES_DIR = "samples"
REAL_EVAL_CROPS = 32  # real crops the quick evaluation compares against (drawn once per run)


def real_reference(arrays: dict, spec: Spec, seed: int) -> np.ndarray:
    """REAL_EVAL_CROPS phase-index crops (B, S, S, S) of the training data, the same for every evaluation
    ((B, 1, S, S) slices for slice discriminators alone)."""
    if isinstance(spec, MixedSpec):
        return real_reference(arrays[VOLUME_KEY], spec.crops, seed)
    if isinstance(spec, slices.SliceSpec):
        return slices.real_reference(arrays, spec, REAL_EVAL_CROPS, seed)
    spec = dataclasses.replace(spec, batch_size=REAL_EVAL_CROPS, augment=False)
    sample = jax.jit(lambda a, k: dataset.sample_batch(a, spec, k, jax.random.PRNGKey(0), 0))
    return np.asarray(jnp.argmax(sample(arrays, jax.random.PRNGKey(seed + 1)), -1))


def _phase_statistics(indices: np.ndarray, n_phases: int, voxel_size: float) -> tuple[np.ndarray, np.ndarray]:
    """Per volume and phase: (volume fraction, face-counting specific surface area in 1/voxel_size units),
    each (B, n_phases), of phase-index volumes (B, S, S, S)."""
    phases = list(range(n_phases))
    return metrics.volume_fraction(indices, phases), metrics.specific_surface_area(indices, voxel_size, phases)


def evaluation(gen: np.ndarray, real: np.ndarray, phase_map: PhaseMap) -> dict:
    """The log's "eval" record: mean (and spread) volume fractions and surface areas of phase-index volumes
    `gen` (B, S, S, S) against those of `real`."""
    dx = phase_map.voxel_size or 1.0
    vf_g, ssa_g = _phase_statistics(gen, phase_map.n_phases, dx)
    vf_r, ssa_r = _phase_statistics(real, phase_map.n_phases, dx)
    rnd = lambda a: [round(float(v), 5) for v in a]  # noqa: E731
    # real 2D slices (B, 1, S, S) have no surface area comparable with a volume's
    surface = {"ssa_real": rnd(ssa_r.mean(0))} if real.shape[1] > 1 else {}
    return {
        "phases": [phase_map.name(i) for i in range(phase_map.n_phases)],
        "vf": rnd(vf_g.mean(0)),
        "vf_std": rnd(vf_g.std(0)),
        "vf_real": rnd(vf_r.mean(0)),
        "ssa": rnd(ssa_g.mean(0)),
        **surface,
        "ssa_unit": "1/um" if phase_map.voxel_size else "1/voxel",
    }


def quick_evaluation(
    model_config: ModelConfig,
    phase_map: PhaseMap,
    frozen: dict,
    real: np.ndarray,
    config: TrainConfig,
    path: Path,
    step: int,
) -> dict:
    """Generate `eval_samples` volumes (fixed latents of the statistics' size: `statistics_latent`), compare
    their volume fractions and surface areas with those of the real crops `real`, draw them to `path`."""
    gen = FrozenGenerator(model_config, phase_map, jax.device_get(frozen))
    side, periodic, _ = statistics_latent(model_config, config.latent, config.batch_size)
    z = draw_latents(model_config, jax.random.PRNGKey(config.seed + 2), config.eval_samples, side)
    generated = np.argmax(gen.probabilities(np.asarray(z), periodic=periodic), axis=-1)
    title = f"step {step}: generated (top), real (bottom), middle x slices"
    figures.save_png(figures.training_samples(generated, real, title), path)
    return evaluation(generated, real, phase_map)


def fmt_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def progress_line(record: dict, config: TrainConfig) -> str:
    """One line of a log record for the terminal: step, rate, losses, D's outputs, ETA (and eval fractions)."""
    rate = record["steps_per_s"] or float("nan")
    eta = (config.steps - record["step"]) / rate if rate > 0 else float("nan")
    real, fake = ("D(x)", "D(G(z))") if config.loss == "bce" else ("C(x)", "C(G(z))")
    line = (
        f"step {record['step']}/{config.steps}  {rate:.3f} steps/s  loss_d {record['loss_d']:.4f}  "
        f"loss_g {record['loss_g']:.4f}  {real} {record['d_real']:.3f}  {fake} {record['d_fake']:.3f}  "
        f"ETA {fmt_duration(eta)}"
    )
    if "eval" in record:
        line += f"  vf {record['eval']['vf']} (real {record['eval']['vf_real']})"
    return line


def read_log(path: Path, upto: int) -> list[dict]:
    """Log records with step <= `upto` (a resumed run rewrites what followed its checkpoint)."""
    if not path.exists():
        return []
    lines = path.read_text().split("\n")  # a last line without "\n" is a partial write (a full disk, a kill)
    records = [json.loads(line) for line in lines[:-1] if line.strip()]
    return [r for r in records if r["step"] <= upto]


def append_log(path: Path, record: dict) -> None:
    with open(path, "a") as fh:
        fh.write(json.dumps(record) + "\n")
