"""What `porejax design` writes: design.tif, latent.npy, design.json and design.png.

design.png: mid slices of the design; the hard (solid) and soft (dashed) value of every property per step
with its target or bound; and S2(r) / S2(0) of every phase per axis, the design against the band
(min-max) of unconstrained samples of the same generator, size and periodic axes, so a user sees how far
the design moved from the typical set. design.json also holds the latent statistics of the start latent,
the design, and the unconstrained samples' range.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from porejax import jsonio
from porejax.axes import AXES
from porejax.design import DesignResult, Problem, latent_statistics
from porejax.figures import PHASE_COLOURS, _phase_image, new_figure, save_png
from porejax.metrics import two_point_correlation
from porejax.volume import atomic_path, write_volume


def unconstrained_samples(problem: Problem, count: int = 20, seed: int = 10_000) -> tuple[np.ndarray, np.ndarray]:
    """(latents (count, A, A, A, C), label volumes (count, D, H, W)) of seeds seed .. seed + count - 1."""
    g = problem.generator
    latents = np.stack([g.latent(seed + i, problem.latent_shape) for i in range(count)])
    labels = np.stack([g.generate(z, problem.periodic, problem.size)[0] for z in latents])
    return latents, labels


def _s2(labels: np.ndarray, label: int, axis: int, periodic: bool) -> np.ndarray:
    """S2 / S2(0) along `axis`: (lags,) or (B, lags)."""
    _, s2 = two_point_correlation(labels == label, axis, periodic)
    return s2 / np.maximum(s2[..., :1], 1e-12)


def design_figure(problem: Problem, result: DesignResult, samples: np.ndarray):
    """The design.png figure (see the module docstring)."""
    pm, dx, terms = problem.generator.phase_map, problem.voxel_size, problem.terms
    columns = max(3, len(terms))
    fig = new_figure(3.2 * columns, 9.0)
    grid = fig.add_gridspec(3, columns)
    labels = result.labels
    for axis in range(3):
        ax = fig.add_subplot(grid[0, axis])
        plane = np.take(labels, labels.shape[axis] // 2, axis=axis)
        names = "".join(a for a in AXES if a != AXES[axis])
        _phase_image(ax, plane, pm, dx, f"design, mid {AXES[axis]}", names)
    steps = [r["step"] for r in result.history]
    for k, term in enumerate(terms):
        ax = fig.add_subplot(grid[1, k])
        name = term.prop.name
        ax.plot(steps, [r["hard"][name] for r in result.history], color="#d8453b", label="hard")
        ax.plot(steps, [r["soft"][name] for r in result.history], color="#d8453b", ls="--", label="soft")
        if term.value is not None:
            ax.axhline(term.value, color="#1b1b1b", lw=0.8, label=term.text())
        ax.axvline(result.step, color="#9a9a9a", lw=0.8, ls=":")
        ax.set_xlabel("step")
        ax.set_title(name, fontsize=9)
        ax.legend(fontsize=7)
    wrap = all(problem.periodic)
    for axis in range(3):
        ax = fig.add_subplot(grid[2, axis])
        for i, label in enumerate(pm.labels):
            colour = PHASE_COLOURS[i]  # as in the slices
            band = _s2(samples, label, axis, wrap)
            r = np.arange(band.shape[-1]) * dx
            ax.fill_between(r, band.min(0), band.max(0), color=colour, alpha=0.25)
            ax.plot(r, _s2(labels, label, axis, wrap), color=colour, label=pm.name(i))
        ax.set_xlabel(f"r along {AXES[axis]} (µm)")
        ax.set_ylabel("S2(r) / S2(0)")
        ax.set_title(f"S2 along {AXES[axis]}: design vs {len(samples)} samples", fontsize=9)
        ax.legend(fontsize=7)
    return fig


def write_design(
    out: str | os.PathLike,
    problem: Problem,
    result: DesignResult,
    start_latent: np.ndarray,
    info: dict,
    samples: int = 20,
) -> Path:
    """Write DIR/design.tif, latent.npy, design.json and design.png; returns DIR."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_volume(out / "design.tif", result.labels, problem.generator.phase_map.voxel_size)
    with atomic_path(out / "latent.npy") as tmp, open(tmp, "wb") as f:
        np.save(f, result.latent)
    sample_latents, sample_labels = unconstrained_samples(problem, samples)
    sample_stats = [latent_statistics(z) for z in sample_latents]
    record = {
        **info,
        "terms": [t.text() for t in problem.terms],
        "tolerances": {t.text(): t.tolerance() for t in problem.terms if t.value is not None},
        "voxel_size_um": problem.voxel_size,
        "latent_shape": list(result.latent.shape),
        "best_step": result.step,
        "reached": result.reached,
        "hard": result.hard,
        "latent_statistics": {
            "start": latent_statistics(start_latent),
            "design": result.latent_statistics,
            "unconstrained_samples_range": {
                k: [min(s[k] for s in sample_stats), max(s[k] for s in sample_stats)] for k in sample_stats[0]
            },
        },
        "times": result.times,
        "history": result.history,
    }
    jsonio.write(out / "design.json", record)
    save_png(design_figure(problem, result, sample_labels), out / "design.png")
    return out
