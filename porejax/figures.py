"""Every figure porejax draws (compare report, demo, training samples): matplotlib Figures on the Agg
canvas, never pyplot, so there is no process-wide state and no matplotlib backend to set.

Slices show the y-z plane (array axes 1, 2) at mid x unless stated; lengths are in `length` units:
micrometres when the voxel size is known, else voxels (`voxel_size` 1).
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from porejax.axes import AXES
from porejax.volume import PhaseMap, atomic_path, to_indices

PHASE_COLOURS = ("#1b1b1b", "#9a9a9a", "#f0c419", "#3b7dd8", "#d8453b", "#49a35b", "#8e5cc4", "#e38b2c")
SET_COLOURS = {"real": "#3b7dd8", "generated": "#d8453b"}


def new_figure(width: float, height: float) -> Figure:
    """An Agg-backed figure of `width` x `height` inches, constrained layout (no pyplot state)."""
    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def png_bytes(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def save_png(fig: Figure, path: str | os.PathLike) -> bytes:
    """Write the figure as PNG atomically; returns the bytes (for embedding)."""
    data = png_bytes(fig)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return data


def _phase_image(
    ax,
    labels: np.ndarray,
    phase_map: PhaseMap,
    voxel_size: float,
    title: str = "",
    axis_names: str = "yz",
    length: str = "µm",
) -> None:
    """A 2D label image (rows = first axis) in phase colours, extent in `length` units."""
    n = phase_map.n_phases
    cmap = ListedColormap(PHASE_COLOURS[:n])
    rows, cols = labels.shape
    ax.imshow(
        to_indices(labels, phase_map),
        cmap=cmap,
        norm=BoundaryNorm(np.arange(n + 1) - 0.5, n),
        origin="lower",
        interpolation="nearest",
        extent=(0, cols * voxel_size, 0, rows * voxel_size),
    )
    ax.set_xlabel(f"{axis_names[1]} ({length})")
    ax.set_ylabel(f"{axis_names[0]} ({length})")
    if title:
        ax.set_title(title, fontsize=9)


def _phase_legend(fig: Figure, phase_map: PhaseMap) -> None:
    handles = [Patch(color=PHASE_COLOURS[i], label=phase_map.name(i)) for i in range(phase_map.n_phases)]
    fig.legend(handles=handles, loc="outside lower center", ncol=phase_map.n_phases, frameon=False)


def slices(
    real: np.ndarray, generated: np.ndarray, phase_map: PhaseMap, voxel_size: float, length: str = "µm", count: int = 4
) -> Figure:
    """Mid-x slices of `count` real (top row) and generated (bottom row) volumes (paper Fig. 3)."""
    count = min(count, len(real), len(generated))
    fig = new_figure(2.3 * count, 5.2)
    axes = fig.subplots(2, count, squeeze=False)
    for row, (name, volumes) in enumerate((("real", real), ("generated", generated))):
        for i in range(count):
            volume = volumes[i]
            _phase_image(
                axes[row, i], volume[volume.shape[0] // 2], phase_map, voxel_size, f"{name} #{i}", length=length
            )
    fig.suptitle("Real vs generated: y-z slices at mid x")
    _phase_legend(fig, phase_map)
    return fig


def box_plots(entries: Sequence[tuple[str, str, np.ndarray, np.ndarray]]) -> Figure:
    """One panel per (title, unit, real values, generated values): real and generated boxes (Fig. 4/6)."""
    cols = min(3, len(entries))
    rows = -(-len(entries) // cols)
    fig = new_figure(3.2 * cols, 2.7 * rows)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, (title, unit, real, generated) in zip(axes, entries):
        parts = ax.boxplot([real, generated], tick_labels=["real", "generated"], patch_artist=True, widths=0.6)
        for patch, name in zip(parts["boxes"], ("real", "generated")):
            patch.set_facecolor(SET_COLOURS[name])
            patch.set_alpha(0.5)
        ax.set_title(title, fontsize=9)
        ax.set_ylabel(unit or "(dimensionless)")
    for ax in axes[len(entries) :]:
        ax.set_visible(False)
    fig.suptitle("Metrics per volume: real vs generated")
    return fig


def two_point_correlation(summary: dict, phase_map: PhaseMap, length: str = "µm") -> Figure:
    """S2(r)/S2(0) per phase (rows) along x, y, z (columns): means, real ±1 std band (Fig. 5/7)."""
    r = np.asarray(summary["r"])
    n = phase_map.n_phases
    fig = new_figure(9.5, 2.4 * n)
    axes = fig.subplots(n, 3, squeeze=False, sharex=True, sharey=True)
    for p in range(n):
        for a in range(3):
            ax = axes[p, a]
            real_mean, real_std = summary["real"]["mean"][p, a], summary["real"]["std"][p, a]
            ax.fill_between(
                r,
                real_mean - real_std,
                real_mean + real_std,
                color=SET_COLOURS["real"],
                alpha=0.25,
                label="real ±1 std",
            )
            ax.plot(r, real_mean, color=SET_COLOURS["real"], label="real mean")
            ax.plot(
                r, summary["generated"]["mean"][p, a], color=SET_COLOURS["generated"], ls="--", label="generated mean"
            )
            ax.set_title(f"{phase_map.name(p)}, along {AXES[a]}", fontsize=9)
            if p == n - 1:
                ax.set_xlabel(f"r ({length})")
            if a == 0:
                ax.set_ylabel("S2(r) / S2(0)")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle("Two-point correlation")
    return fig


def diffusivity_vs_fraction(
    real_vf: np.ndarray, real_drel: np.ndarray, gen_vf: np.ndarray, gen_drel: np.ndarray, phase_map: PhaseMap
) -> Figure:
    """D_rel (mean of x, y, z) against volume fraction, one panel per phase (paper S2/S3). Inputs (B, P)."""
    n = phase_map.n_phases
    fig = new_figure(3.2 * n, 3.0)
    axes = fig.subplots(1, n, squeeze=False)[0]
    for p, ax in enumerate(axes):
        ax.scatter(real_vf[:, p], real_drel[:, p], s=12, color=SET_COLOURS["real"], alpha=0.7, label="real")
        ax.scatter(
            gen_vf[:, p], gen_drel[:, p], s=12, color=SET_COLOURS["generated"], alpha=0.7, marker="^", label="generated"
        )
        ax.set_title(phase_map.name(p), fontsize=9)
        ax.set_xlabel("volume fraction")
        ax.set_ylabel("D_rel (mean of x, y, z)")
    axes[0].legend(fontsize=7)
    fig.suptitle("Relative diffusivity vs volume fraction")
    return fig


def periodic_tiling_and_flux(
    volume: np.ndarray,
    flux_mirror: np.ndarray,
    flux_periodic: np.ndarray,
    phase_map: PhaseMap,
    voxel_size: float,
    phase: int,
    drel: dict[str, float],
    length: str = "µm",
) -> Figure:
    """Fig. 8: 2x2 tiling of a periodic volume's mid-x slice, and the x-flux on the side face z = 0 of
    the diffusion solve along x through phase index `phase` with mirror vs periodic side boundaries
    (flux: (3, D, H, W)); `drel`: D_rel per side boundary ("mirror", "periodic")."""
    fig = new_figure(11.5, 3.8)
    axes = fig.subplots(1, 3)
    side = volume.shape[1]
    tiled = np.tile(volume[volume.shape[0] // 2], (2, 2))
    _phase_image(axes[0], tiled, phase_map, voxel_size, "2x2 tiling, y-z slice at mid x", length=length)
    axes[0].axhline(side * voxel_size, color="#e0218a", ls="--", lw=1.2)
    axes[0].axvline(side * voxel_size, color="#e0218a", ls="--", lw=1.2)
    # flux[0][i] crosses the face between layers i and i + 1 along x: show the interior faces, grey where
    # either neighbour is another phase
    inside = volume[:, :, 0] == phase_map.labels[phase]
    outside = ~(inside[:-1] & inside[1:])
    maps = [np.ma.masked_where(outside, np.abs(flux[0][:-1, :, 0])) for flux in (flux_mirror, flux_periodic)]
    vmax = max(float(m.max()) for m in maps) or 1.0
    cmap = matplotlib.colormaps["inferno"].with_extremes(bad="#d9d9d9")
    x_faces = (0.5 * voxel_size, (volume.shape[0] - 0.5) * voxel_size)
    for ax, flux_map, name in zip(axes[1:], maps, ("mirror", "periodic")):
        image = ax.imshow(
            flux_map,
            origin="lower",
            cmap=cmap,
            vmin=0,
            vmax=vmax,
            interpolation="nearest",
            extent=(0, flux_map.shape[1] * voxel_size) + x_faces,
        )
        ax.set_title(f"{name} sides: |flux along x| at z = 0\nD_rel = {drel[name]:.4g}", fontsize=9)
        ax.set_xlabel(f"y ({length})")
        ax.set_ylabel(f"x ({length})")
    fig.colorbar(
        image,
        ax=axes[1:],
        label=f"flux through {phase_map.name(phase)} voxel faces\n(D0 = 1, Δc = 1 over x; grey: other phases)",
    )
    _phase_legend(fig, phase_map)
    return fig


def interpolation_strip(
    volumes: Sequence[np.ndarray], phase_map: PhaseMap, voxel_size: float, length: str = "µm"
) -> Figure:
    """Mid-x slices of volumes generated along a latent path (paper S8)."""
    fig = new_figure(2.1 * len(volumes), 2.8)
    axes = fig.subplots(1, len(volumes), squeeze=False)[0]
    for i, (ax, volume) in enumerate(zip(axes, volumes)):
        _phase_image(
            ax, volume[volume.shape[0] // 2], phase_map, voxel_size, f"t = {i / (len(volumes) - 1):.2f}", length=length
        )
        if i:
            ax.set_ylabel("")
    fig.suptitle("Latent interpolation (slerp)")
    _phase_legend(fig, phase_map)
    return fig


def confidence_maps(
    labels: Sequence[np.ndarray],
    confidence: Sequence[np.ndarray],
    phase_map: PhaseMap,
    voxel_size: float,
    length: str = "µm",
) -> Figure:
    """Mid-x slices of generated volumes (top) and their confidence, the max phase probability (S9)."""
    count = len(labels)
    fig = new_figure(2.6 * count + 0.8, 5.4)
    axes = fig.subplots(2, count, squeeze=False)
    floor = 1.0 / phase_map.n_phases
    for i in range(count):
        mid = labels[i].shape[0] // 2
        _phase_image(axes[0, i], labels[i][mid], phase_map, voxel_size, f"generated #{i}", length=length)
        conf = confidence[i][mid]
        image = axes[1, i].imshow(
            conf,
            origin="lower",
            cmap="viridis",
            vmin=floor,
            vmax=1.0,
            interpolation="nearest",
            extent=(0, conf.shape[1] * voxel_size, 0, conf.shape[0] * voxel_size),
        )
        axes[1, i].set_title(f"confidence, mean {float(confidence[i].mean()):.3f}", fontsize=9)
        axes[1, i].set_xlabel(f"z ({length})")
        axes[1, i].set_ylabel(f"y ({length})")
    fig.colorbar(image, ax=axes[1, :], label="max phase probability")
    _phase_legend(fig, phase_map)
    return fig


def generation_time(voxels: np.ndarray, seconds: np.ndarray, slope: float, intercept: float, r2: float) -> Figure:
    """Generation time against voxel count with the least-squares line (paper S7)."""
    fig = new_figure(4.6, 3.4)
    ax = fig.subplots()
    mvox = np.asarray(voxels) / 1e6
    ax.plot(mvox, seconds, "o", color=SET_COLOURS["generated"], label="measured")
    line = np.linspace(0, mvox.max() * 1.05, 50)
    ax.plot(
        line,
        intercept + slope * line,
        "-",
        color="#444444",
        label=f"fit: {slope:.3g} s / Mvoxel {'+' if intercept >= 0 else '-'} {abs(intercept):.2g} s (R² {r2:.4f})",
    )
    ax.set_xlabel("voxels (millions)")
    ax.set_ylabel("generation time (s)")
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7)
    ax.set_title("Generation time vs volume size")
    return fig


def _index_image(ax, image: np.ndarray, vmax: int, title: str = "") -> None:
    """A 2D phase-index image without ticks (viridis, 0..vmax)."""
    ax.imshow(image, cmap="viridis", vmin=0, vmax=vmax, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)


def middle_slices(volumes: dict[str, np.ndarray], phase_map: PhaseMap, tiled: Sequence[str] = ()) -> Figure:
    """One row per named label volume: its middle x, y and z slices; names in `tiled` shown 2 x 2 (the demo)."""
    fig = new_figure(7.5, 2.6 * len(volumes))
    axes = fig.subplots(len(volumes), 3, squeeze=False)
    for row, (name, volume) in enumerate(volumes.items()):
        index = to_indices(volume, phase_map)
        for axis in range(3):
            image = np.take(index, index.shape[axis] // 2, axis=axis)
            if name in tiled:
                image = np.tile(image, (2, 2))
            _index_image(
                axes[row][axis],
                image,
                phase_map.n_phases - 1,
                f"{name}: {AXES[axis]} = {volume.shape[axis] // 2}" + (" (2x2 tiled)" if name in tiled else ""),
            )
    return fig


def training_samples(generated: np.ndarray, real: np.ndarray, title: str) -> Figure:
    """Middle x slices of up to 4 generated (top) and real (bottom) phase-index volumes (B, D, H, W)."""
    n = min(4, len(generated), len(real))
    fig = new_figure(2.2 * n, 4.6)
    axes = fig.subplots(2, n, squeeze=False)
    vmax = max(int(generated.max()), int(real.max()), 1)
    for row, (name, vols) in enumerate((("generated", generated), ("real", real))):
        for i in range(n):
            _index_image(axes[row][i], vols[i, vols.shape[1] // 2], vmax)
        axes[row][0].set_ylabel(name)
    fig.suptitle(title)
    return fig


def face_bands(summary: dict) -> Figure:
    """Phase fractions against distance from the nearest face: generated (solid, ±2 standard errors) and
    real crops (dashed), one line per phase (`porejax.compare.statistics.face_band_summary`)."""
    fig = new_figure(6.0, 3.6)
    ax = fig.add_subplot(1, 1, 1)
    x = np.asarray(summary["band_start"]) + summary["band_voxels"] / 2
    gen, se, real = (np.asarray(summary[k]) for k in ("generated_mean", "generated_se", "real_mean"))
    for p, name in enumerate(summary["phases"]):
        (line,) = ax.plot(x, gen[:, p], marker="o", label=f"{name}, generated")
        ax.fill_between(x, gen[:, p] - 2 * se[:, p], gen[:, p] + 2 * se[:, p], color=line.get_color(), alpha=0.2)
        ax.plot(x, real[:, p], linestyle="--", color=line.get_color(), label=f"{name}, real")
    ax.set_xlabel("distance from the nearest face (voxels)")
    ax.set_ylabel("phase fraction")
    ax.legend(fontsize=7, ncol=2)
    return fig
