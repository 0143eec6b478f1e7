"""JSON at the edge: results stay numbers and arrays inside porejax and become JSON only when written.

Convention of every JSON file porejax writes: numpy values as plain numbers and lists; +-infinity as
JSON `Infinity` / `-Infinity` (Python's `json` reads them back as floats); undefined values (NaN) as null.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from porejax.volume import atomic_path

CONVENTIONS = "inf as Infinity/-Infinity, undefined as null"


def jsonable(obj: Any) -> Any:
    """Numpy arrays and scalars, tuples, NamedTuples and Paths -> plain JSON values; NaN -> None."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        value = float(obj)
        return None if math.isnan(value) else value
    if isinstance(obj, Path):
        return str(obj)
    return obj


def dumps(obj: Any, indent: int | None = 1) -> str:
    """`obj` as JSON text in the module's convention."""
    return json.dumps(jsonable(obj), indent=indent)


def write(path: str | os.PathLike, obj: Any) -> Path:
    """Write `obj` as JSON atomically (no partial file under `path` on failure); returns the path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(dumps(obj) + "\n")
    return path
