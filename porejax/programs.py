"""Compiled programs kept whole on disk, found again without tracing: what makes a repeated command start fast.

JAX's persistent compilation cache (`porejax.host.use_compilation_cache`) skips XLA's compilation on a
second run, but its key is the lowered program, so every process still traces and lowers each program
first, which for a short command is a large part of its time (benchmarks/NOTES.md). `run` keys a compiled
program by what determines it instead: the jitted function, its static arguments, the shapes, dtypes and
tree structure of its array arguments, porejax's source, the versions of JAX, jaxlib, flax and numpy, the
backend, the devices, the CPU's model and instruction-set flags (XLA compiles for the host CPU) and the
settings that change what is traced or compiled (XLA_FLAGS, POREJAX_CONV, JAX's precision and x64
options). On a hit the serialised executable is loaded and run; on a miss the function is lowered and
compiled as jit would, run, and written for the next process. Results are those of the jitted function,
bit for bit (the same executable).

Off unless `keep_in` names a folder (the CLI does, through `use_compilation_cache`); `run` is then plain
`fn(*args, **static)`. A file that cannot be read or loaded is compiled again and replaced; a folder that
cannot be written only costs the next process its compilation.
"""

from __future__ import annotations

import functools
import hashlib
import os
import pickle
import platform
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
from jax.experimental import serialize_executable

_FOLDER: Path | None = None
_LOADED: dict[str, Any] = {}  # key -> compiled program, for the rest of this process
_SETTINGS_ENV = ("XLA_FLAGS", "POREJAX_CONV", "JAX_PLATFORMS")
_JAX_OPTIONS = ("jax_enable_x64", "jax_default_matmul_precision", "jax_numpy_dtype_promotion", "jax_disable_jit")


def keep_in(folder: str | os.PathLike | None) -> None:
    """Keep compiled programs in `folder` from now on (None: stop keeping them)."""
    global _FOLDER
    _FOLDER = None if folder is None else Path(folder)
    _LOADED.clear()


def folder() -> Path | None:
    """The folder `run` keeps programs in, or None when off."""
    return _FOLDER


def run(fn: Callable, static: dict, *args):
    """`fn(*args, **static)` for a `jax.jit` function `fn` whose static arguments are `static` (by name),
    through the compiled program kept on disk when `keep_in` has named a folder."""
    if _FOLDER is None or jax.config.jax_disable_jit:
        return fn(*args, **static)
    key = program_key(fn, static, args)
    program = _LOADED.get(key)
    if program is None:
        program = _load(_FOLDER / f"{key}.xla") or _compile_and_keep(fn, static, args, _FOLDER / f"{key}.xla")
        _LOADED[key] = program
    return program(*args)


def program_key(fn: Callable, static: dict, args: tuple) -> str:
    """Hex digest of everything that determines the program `fn` compiles to for these arguments."""
    leaves, tree = jax.tree_util.tree_flatten(args)
    avals = [(tuple(jax.numpy.shape(x)), str(jax.numpy.result_type(x)), _weak(x)) for x in leaves]
    name = getattr(fn, "__module__", ""), getattr(fn, "__qualname__", repr(fn))
    parts = (_environment(), name, sorted((k, repr(v)) for k, v in static.items()), str(tree), avals)
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:40]


def _weak(x) -> bool:
    return bool(getattr(getattr(x, "aval", None), "weak_type", False))


@functools.cache
def _environment() -> tuple:
    """What the host, the installed versions and the process settings contribute to every key."""
    import flax
    import jaxlib
    import numpy

    backend = jax.extend.backend.get_backend()
    return (
        _source_digest(),
        jax.__version__,
        jaxlib.__version__,
        flax.__version__,
        numpy.__version__,
        sys.version_info[:2],
        backend.platform,
        backend.platform_version,
        tuple((str(d), d.device_kind) for d in jax.devices()),
        _cpu(),
        tuple(os.environ.get(name, "") for name in _SETTINGS_ENV),
        tuple(str(getattr(jax.config, option, None)) for option in _JAX_OPTIONS),
    )


def _source_digest() -> str:
    """sha256 of porejax's Python sources (a changed layer or model must not find an old program)."""
    root = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _cpu() -> tuple[str, ...]:
    """The CPU's model and instruction-set flags (XLA's CPU code uses what the host has)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return (platform.machine(), platform.processor())
    wanted = ("model name", "flags", "Features", "CPU part")
    return tuple(sorted({line for line in lines if line.split(":")[0].strip() in wanted}))


def _load(path: Path):
    """The program in `path`, or None when it is missing or cannot be loaded (it is then compiled again)."""
    try:
        with open(path, "rb") as f:
            serialized, in_tree, out_tree, device_ids = pickle.load(f)
        devices = {d.id: d for d in jax.devices()}
        return serialize_executable.deserialize_and_load(
            serialized, in_tree, out_tree, execution_devices=[devices[i] for i in device_ids]
        )
    except Exception:  # missing, damaged or foreign: compiled again and replaced
        return None


def _compile_and_keep(fn: Callable, static: dict, args: tuple, path: Path):
    # compiled afresh, never taken from JAX's persistent cache: an executable loaded from there serialises
    # without its machine code ("Function ... not found" when the copy runs)
    cached = jax.config.jax_enable_compilation_cache
    jax.config.update("jax_enable_compilation_cache", False)
    try:
        program = fn.lower(*args, **static).compile()
    finally:
        jax.config.update("jax_enable_compilation_cache", cached)
    try:
        device_ids = [d.id for d in program.runtime_executable().local_devices()]
        payload = pickle.dumps((*serialize_executable.serialize(program), device_ids))
        path.parent.mkdir(parents=True, exist_ok=True)
    except Exception:  # not serialisable on this backend, or no folder: compiled all the same
        return program
    part = None
    try:
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".part", delete=False) as f:
            part = f.name
            f.write(payload)
        os.replace(part, path)  # whole files only: another process never reads half a program
    except OSError:  # a full or read-only disk: the next process compiles again
        if part is not None and os.path.exists(part):
            os.unlink(part)
    return program
