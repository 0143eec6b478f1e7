"""`porejax characterise FILE.tif [...]`: metrics of label volumes as a table and as JSON."""

from __future__ import annotations

import argparse
import json
import sys

from porejax.errors import PorejaxError
from porejax.metrics._common import AXIS_NAMES
from porejax.metrics.characterise import characterise
from porejax.volume import atomic_path, read_volume


def add_characterise_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `porejax characterise`."""
    parser.add_argument("files", nargs="+", metavar="FILE", help="label volumes (.tif, .tiff or .npy)")
    parser.add_argument("--voxel-size", type=float, required=True, metavar="UM",
                        help="voxel edge length in micrometres (sets the units of SSA and TPB)")
    parser.add_argument("--phases", metavar="L1,L2,...",
                        help="comma-separated phase labels to report, e.g. 0,128,255 (default: labels present); "
                             "TPB needs exactly three")
    parser.add_argument("--periodic", action="store_true",
                        help="treat volumes as periodic: wrap-around faces/edges count, S2 wraps, "
                             "periodic side faces in the diffusion solve")
    parser.add_argument("--no-tortuosity", action="store_true", help="skip the diffusion solves (fast)")
    parser.add_argument("--json", metavar="OUT.json",
                        help="write the metrics as JSON: {file: {..., 'phases': {label: {volume_fraction, "
                             "specific_surface_area (1/um), tortuosity and relative_diffusivity as {x, y, z} "
                             "for array axes 0, 1, 2, tpcf {x, y, z}}}, tpb_density (1/um^2)}}; an infinite "
                             "tortuosity (no spanning path) is written as the string \"inf\"")


def _parse_phases(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise PorejaxError(f"--phases must be comma-separated integer labels, e.g. 0,128,255; got {text!r}") from None


def _table(name: str, record: dict) -> str:
    lines = [f"{name}  (voxel {record['voxel_size_um']} um, shape {record['shape']}, TPB "
             f"{'-' if record['tpb_density'] is None else format(record['tpb_density'], '.4g')} 1/um^2)"]
    header = f"  {'phase':>6} {'vol.frac':>9} {'SSA 1/um':>9}"
    has_tau = any("tortuosity" in p for p in record["phases"].values())
    if has_tau:
        header += "".join(f" {'tau_' + a:>9}" for a in AXIS_NAMES) + "".join(f" {'Drel_' + a:>9}" for a in AXIS_NAMES)
    lines.append(header)
    for label, phase in record["phases"].items():
        row = f"  {label:>6} {phase['volume_fraction']:>9.4f} {phase['specific_surface_area']:>9.4f}"
        if has_tau:
            row += "".join(f" {_fmt(phase['tortuosity'][a]):>9}" for a in AXIS_NAMES)
            row += "".join(f" {_fmt(phase['relative_diffusivity'][a]):>9}" for a in AXIS_NAMES)
        lines.append(row)
    return "\n".join(lines)


def _fmt(value: float | str) -> str:
    return value if isinstance(value, str) else f"{value:.4g}"


def characterise_command(args: argparse.Namespace) -> int:
    """Run `porejax characterise`; returns the exit status (errors raise PorejaxError)."""
    phases = _parse_phases(args.phases)
    results = {}
    for i, path in enumerate(args.files, 1):
        if len(args.files) > 1:
            print(f"[{i}/{len(args.files)}] {path}", file=sys.stderr, flush=True)
        volume = read_volume(path)
        results[str(path)] = characterise(volume, args.voxel_size, phases=phases,
                                          tortuosity=not args.no_tortuosity, periodic=args.periodic)
        print(_table(str(path), results[str(path)]), flush=True)
    if args.json:
        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps(results, indent=1, allow_nan=False))
        print(f"wrote {args.json}")
    return 0
