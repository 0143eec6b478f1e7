"""The report document: a list of blocks (headings, text, tables, figures) rendered to Markdown and to
self-contained HTML, and the report's content built from the results (metrics.json)."""

from __future__ import annotations

import base64
import dataclasses
import html
import math
from collections.abc import Sequence

from porejax import jsonio
from porejax.compare.sets import METRICS, unit_text
from porejax.compare.statistics import VERDICT_RULE
from porejax.volume import PhaseMap


def fmt(value: float | str | None, digits: int = 3) -> str:
    """A number for tables: `digits` significant digits; "inf"/"-inf"; "n/a" for undefined."""
    if value is None:
        return "n/a"
    value = float(value)
    if math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.{digits}g}"


def fmt_mean_std(mean: float, std: float) -> str:
    """mean ± std with the std to two significant digits and the mean to the same decimal place."""
    if std > 0:
        decimals = min(8, max(0, 1 - math.floor(math.log10(std))))
        return f"{mean:.{decimals}f} ± {std:.{decimals}f}"
    return f"{fmt(mean)} ± 0"


@dataclasses.dataclass
class Document:
    blocks: list[tuple] = dataclasses.field(default_factory=list)

    def heading(self, text: str, level: int = 2) -> None:
        self.blocks.append(("h", level, text))

    def text(self, text: str) -> None:
        self.blocks.append(("p", text))

    def table(self, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        self.blocks.append(("table", list(header), [list(r) for r in rows]))

    def figure(self, name: str, caption: str, png: bytes) -> None:
        self.blocks.append(("figure", name, caption, png))

    def markdown(self) -> str:
        out = []
        for block in self.blocks:
            if block[0] == "h":
                out.append("#" * block[1] + " " + block[2])
            elif block[0] == "p":
                out.append(block[1])
            elif block[0] == "table":
                out.append(
                    "\n".join(
                        "| " + " | ".join(c.replace("|", "\\|") for c in row) + " |"
                        for row in [block[1], ["---"] * len(block[1]), *block[2]]
                    )
                )
            else:
                out.append(f"![{block[2]}]({block[1]})\n\n*{block[2]}*")
        return "\n\n".join(out) + "\n"

    def html(self, title: str) -> str:
        def inline(text: str) -> str:
            parts = html.escape(text).split("**")
            return "".join(f"<b>{p}</b>" if i % 2 else p for i, p in enumerate(parts))

        out = [
            f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>"
            "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;line-height:1.4}"
            "table{border-collapse:collapse;margin:1em 0;font-size:0.9em}td,th{border:1px solid #bbb;"
            "padding:3px 8px;text-align:left}th{background:#eee}img{max-width:100%}figcaption{font-style:italic}"
            "</style></head><body>"
        ]
        for block in self.blocks:
            if block[0] == "h":
                out.append(f"<h{block[1]}>{inline(block[2])}</h{block[1]}>")
            elif block[0] == "p":
                out.append(f"<p>{inline(block[1])}</p>")
            elif block[0] == "table":
                head = "".join(f"<th>{inline(c)}</th>" for c in block[1])
                body = "".join("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in row) + "</tr>" for row in block[2])
                out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
            else:
                data = base64.b64encode(block[3]).decode("ascii")
                out.append(
                    f"<figure><img alt='{html.escape(block[1])}' src='data:image/png;base64,{data}'>"
                    f"<figcaption>{inline(block[2])}</figcaption></figure>"
                )
        return "\n".join(out + ["</body></html>"]) + "\n"


TABLE_HEADER = (
    "metric",
    "phase",
    "real (mean ± std)",
    "generated (mean ± std)",
    "Δmean / real std",
    "std ratio (gen / real)",
    "KS D",
    "p",
    "p (Bonferroni)",
    "verdict",
    "note",
)


def table_row(row: dict) -> list[str]:
    """The cells of one statistics-table row, formatted from the row's numbers (metrics.json "table")."""
    title = row["title"] + (f" ({row['unit']})" if row["unit"] else "")
    return [
        title,
        row["phase"] or "all three",
        fmt_mean_std(row["real"]["mean"], row["real"]["std"]),
        fmt_mean_std(row["generated"]["mean"], row["generated"]["std"]),
        fmt(row["delta_mean_in_real_std"]),
        fmt(row["std_ratio"]),
        fmt(row["ks_statistic"]),
        fmt(row["p_value"]),
        fmt(row["p_adjusted"]),
        row["verdict"],
        row["note"],
    ]


def _paper_table(rows: list[dict], length: str) -> tuple[list[str], list[list[str]]]:
    """The paper's Tables 3/4 layout: a row per set, a column per metric with the phases joined by ' / '."""
    columns = [m for m in METRICS if any(r["metric"] == m.key for r in rows)]
    units = [unit_text(m, length) for m in columns]
    header = ["set"] + [m.title.split(" (")[0] + (f" ({unit})" if unit else "") for m, unit in zip(columns, units)]
    body = []
    for name in ("real", "generated"):
        cells = [name]
        for m in columns:
            cells.append(
                " / ".join(fmt_mean_std(r[name]["mean"], r[name]["std"]) for r in rows if r["metric"] == m.key)
            )
        body.append(cells)
    return header, body


def _physical_size(settings: dict) -> str:
    """'S µm, voxel V µm', or the notice that lengths are in voxels when no voxel size is known."""
    voxel = settings["voxel_size_um"]
    if voxel is None:
        return (
            "no voxel size known: lengths are in voxels, surface areas per voxel and TPB densities per "
            "voxel², pass --voxel-size for micrometres"
        )
    return f"{settings['size'] * voxel:.4g} µm, voxel {voxel:.6g} µm"


def render_report(results: dict, figures: dict[str, tuple[str, bytes]], phase_map: PhaseMap) -> Document:
    """The report document from the results (metrics.json content) and the figures {file: (caption, png)}."""
    doc = Document()
    _settings_section(doc, results["settings"])
    _statistics_section(doc, results, phase_map)
    _memorisation_section(doc, results["memorisation"])
    _correlation_section(doc, results["two_point_correlation"]["band"])
    if "face_bands" in results:
        _face_band_section(doc, results["face_bands"])
    if "seams" in results:
        _seams_section(doc, results["seams"])
    _studies_section(doc, results)
    doc.heading("Figures")
    for name, (caption, png) in figures.items():
        doc.figure(name, caption, png)
    doc.text(
        f"Machine-readable numbers: `metrics.json` ({jsonio.CONVENTIONS}). "
        f"Made by porejax in {results['seconds']:.0f} s."
    )
    return doc


def _settings_section(doc: Document, s: dict) -> None:
    """What was compared: the checkpoint, the sets and the real volumes the crops came from."""
    doc.heading("porejax compare: real vs generated microstructures", 1)
    doc.text(
        f"Checkpoint: `{s['checkpoint']}` (step {s['step']}). {s['real_crops']} real crops and {s['n']} "
        f"generated volumes of side {s['size']} voxels ({_physical_size(s)}); generated volumes "
        f"{'periodic in x, y, z' if s['periodic'] else 'non-periodic (centre crops)'}; seed {s['seed']}."
    )
    doc.text(f"**Real set: {s['real_set']}.**")
    doc.table(
        ["real volume", "shape", "crops", "distinct crop positions", "non-overlapping crops", "source"],
        [
            [
                f"`{v['file']}`",
                " x ".join(map(str, v["shape"])),
                str(v["crops"]),
                str(v["distinct_crop_positions"]),
                str(v["non_overlapping_crops"]),
                v["source"],
            ]
            for v in s["real"]
        ],
    )
    doc.text(
        "Real crops lie at random, distinct positions inside each volume's sampled region and may overlap; "
        "crop i comes from volume i mod V (skipping volumes whose positions are used up)."
    )
    doc.text(
        "Metrics of every volume are those of a non-periodic volume (outer faces and wrap-around paths never "
        "count); D_rel is the mean over x, y and z of the diffusion solve with mirror side boundaries; std is "
        "the sample standard deviation (ddof = 1)."
    )


def _statistics_section(doc: Document, results: dict, phase_map: PhaseMap) -> None:
    """The paper-layout summary and the per-metric statistics with verdicts."""
    s = results["settings"]
    phases = " / ".join(phase_map.name(i) for i in range(phase_map.n_phases))
    doc.heading("Summary (layout of the paper's Tables 3/4)")
    doc.text(f"Phases in each cell: {phases}.")
    doc.table(*_paper_table(results["table"], s["length_unit"]))
    doc.heading("Statistics per metric")
    doc.table(TABLE_HEADER, [table_row(r) for r in results["table"]])
    matches = sum(r["verdict"] == "matches" for r in results["table"])
    doc.text(f"**{matches} of {len(results['table'])} metrics match.** {VERDICT_RULE}")


def _memorisation_section(doc: Document, mem: dict) -> None:
    """Nearest training crops of the generated set against the real baseline, and the verdict."""
    doc.heading("Memorisation check")
    doc.table(
        ["set", "volumes", "median nearest agreement", "95th percentile", "max", "exact copies (≥ 0.99)"],
        [
            [
                name,
                str(count),
                fmt(part["median"]),
                fmt(part["q95"]),
                fmt(part["max"]),
                "n/a" if part["exact_copy_rate"] is None else f"{part['exact_copy_rate']:.1%}",
            ]
            for name, part, count in (
                ("generated", mem["generated"], len(mem["generated"]["nearest_agreement"])),
                ("real baseline", mem["baseline"], mem["baseline"]["crops_with_a_training_crop"]),
            )
        ],
    )
    doc.text(
        f"**Verdict: {mem['verdict']}.** Nearest sub-volume by voxel agreement (fraction of equal voxels), "
        f"searched by FFT cross-correlation over {mem['searched_fraction_of_training_positions']:.1%} of all crop "
        f"positions of {mem['searched']}. The baseline of a real crop is its nearest searched crop that does not "
        "overlap it (real crops without one are left out). " + mem["rule"]
    )


def _correlation_section(doc: Document, band: list) -> None:
    """How much of each generated S2 curve lies inside the real mean +- std band."""
    doc.heading("Two-point correlation inside the real band")
    doc.table(
        ["phase", "axis", "lags inside real mean ± std", "max |Δ| (real std)"],
        [[r["phase"], r["axis"], f"{r['fraction_inside']:.0%}", fmt(r["max_gap_in_real_std"], 2)] for r in band],
    )


def _face_band_section(doc: Document, fb: dict) -> None:
    """Phase fractions against distance from the nearest face, generated vs real."""
    doc.heading("Phase fractions by distance from the nearest face")
    doc.table(
        ["distance (voxels)"] + [f"{name}: generated / real" for name in fb["phases"]],
        [
            [f"{start}-{start + fb['band_voxels'] - 1}"]
            + [f"{fmt(g)} ± {fmt(e)} / {fmt(r)}" for g, e, r in zip(gen, se, real)]
            for start, gen, se, real in zip(fb["band_start"], fb["generated_mean"], fb["generated_se"], fb["real_mean"])
        ],
    )
    doc.text(
        f"**{fb['deviating_bands']} of {len(fb['band_start'])} generated bands deviate** "
        f"({fb['rule']}; ± one standard error over the volumes)."
    )


def _seams_section(doc: Document, seams: dict) -> None:
    """Label mismatch across the wrap seams of periodic volumes against the interior."""
    doc.heading("Seams of the periodic generated volumes")
    doc.table(
        ["axis", "seam mismatch", "interior mismatch", "ratio", "same-phase interior", "same-phase ratio"],
        [
            [
                axis,
                fmt(v["seam_mismatch"], 4),
                fmt(v["interior_mismatch"], 4),
                fmt(v["ratio"], 3),
                fmt(v.get("same_phase_interior_mismatch"), 4),
                fmt(v.get("same_phase_ratio"), 3),
            ]
            for axis, v in seams.items()
        ],
    )
    doc.text(
        "Fraction of voxels whose label differs across the wrap seam (last vs first slice) and, on "
        "average, between neighbouring interior slices; a ratio of 1 is a seamless tiling. Same-phase: "
        "only the interior pairs at the seam's position modulo the generator's period unit, which "
        "separates the seam from any variation of the structure within the period unit."
    )


def _studies_section(doc: Document, results: dict) -> None:
    """The optional generator studies: periodic side boundaries and generation time."""
    if "periodic_boundaries" in results:
        pb = results["periodic_boundaries"]
        doc.heading("Periodic volumes and side boundaries")
        doc.text(
            f"A periodic generated volume of side {pb['side']} (seed {pb['seed']}); diffusion along x through "
            f"{pb['phase']}: D_rel = {fmt(pb['relative_diffusivity']['mirror'], 4)} with mirror side boundaries, "
            f"{fmt(pb['relative_diffusivity']['periodic'], 4)} with periodic ones."
        )
    if "generation_time" in results:
        gt = results["generation_time"]
        doc.heading("Generation time")
        doc.text(
            f"{fmt(gt['slope_s_per_mvoxel'])} s per million voxels (intercept {fmt(gt['intercept_s'])} s), R² = "
            f"{gt['r2']:.4f}, over sides {', '.join(str(round(v ** (1 / 3))) for v in gt['voxels'])}."
        )
