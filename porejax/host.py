"""Process-wide settings of the host runtime: malloc's reuse of freed memory, and the compilation cache.

XLA's CPU runtime allocates the temporary buffers of every call afresh, one block per call (gigabytes
for a paper training iteration). glibc's malloc serves blocks that large with mmap and unmaps them when
they are freed, so every call faults in and zeroes all those pages again. `reuse_freed_memory` makes
malloc keep freed memory for the next call instead. `porejax train` applies it at start when JAX will
compute on the CPU (`cpu_backend_expected`); Python users call it first thing in their process. On a GPU
or TPU the device buffers are not malloc's, so the setting would only cost host memory. Measurements:
benchmarks/NOTES.md ("Host allocator").

Every `porejax` command compiles its XLA programs afresh: seconds at each start (the generator's stages,
the diffusion solver, a training step), often longer than the computation. `use_compilation_cache` keeps
compiled programs on disk (JAX's persistent compilation cache, keyed by program, JAX version and device),
so a second run of the same command and sizes loads them instead. It also turns on `porejax.programs`,
which keeps the generator's programs whole in a subfolder, found again without tracing them. The CLI turns
both on for every command.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib.util
import os
import sys

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8


def reuse_freed_memory() -> bool:
    """Make glibc's malloc reuse freed memory instead of returning it to the system; True if applied.

    One arena (a block freed by one thread is reused by the next), no mmap for large blocks, and no
    trimming of the heap (threshold SIZE_MAX: glibc converts mallopt's int -1 to size_t). The process
    keeps the memory it has used: a repeated computation stops faulting in pages after a few calls, at
    the cost of a higher resident size (the freed blocks do not always fit the next request exactly, so
    the heap can hold about two of them).
    Bounded-memory generation therefore keeps glibc's defaults. It must come before JAX starts its
    runtime (the first computation): threads that already allocated keep their own arenas, and a process
    whose runtime already holds memory under glibc's defaults (a notebook, a test run calling the CLI's
    `main`) is left as it is. A no-op (False) then, and where the C library is not glibc.
    """
    if _jax_runtime_started():
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        libc.gnu_get_libc_version  # only glibc has it (other C libraries number mallopt's options differently)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    return all(
        mallopt(option, value) == 1 for option, value in ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, -1))
    )


def _jax_runtime_started() -> bool:
    """Whether this process has initialised a JAX backend (started its runtime threads and allocator use)."""
    bridge = sys.modules.get("jax._src.xla_bridge")
    started = getattr(bridge, "backends_are_initialized", None)
    return bool(started and started())


def cpu_backend_expected() -> bool:
    """Whether JAX will compute on the CPU, decided without starting JAX (which would start its threads).

    JAX_PLATFORMS (or the older JAX_PLATFORM_NAME) decides when set (its first entry); otherwise the CPU
    is expected when no accelerator plugin (`jax_plugins`, e.g. jax[cuda12]) or TPU runtime (libtpu) is
    installed. With a plugin installed but no device present JAX falls back to the CPU and this says False:
    the setting is then skipped, which costs speed, never correctness.
    """
    platforms = os.environ.get("JAX_PLATFORMS") or os.environ.get("JAX_PLATFORM_NAME") or ""
    if platforms.strip():
        return platforms.split(",")[0].strip().lower() == "cpu"
    return not any(importlib.util.find_spec(name) for name in ("jax_plugins", "libtpu"))


CACHE_ENV = "POREJAX_COMPILATION_CACHE"  # a folder, or "off"
_OFF = ("off", "0", "no", "false", "none")
_MIN_COMPILE_SECONDS = 0.1  # programs compiling faster than this are not worth a file
PROGRAMS_FOLDER = "programs"  # in the cache folder: whole compiled programs of `porejax.programs`


def compilation_cache_dir(environ=os.environ) -> str | None:
    """Where `use_compilation_cache` keeps compiled programs: $POREJAX_COMPILATION_CACHE if set (None for
    "off"), else $XDG_CACHE_HOME/porejax/xla (default ~/.cache/porejax/xla)."""
    choice = environ.get(CACHE_ENV, "").strip()
    if choice.lower() in _OFF:
        return None
    if choice:
        return os.path.expanduser(choice)
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "porejax", "xla")


def use_compilation_cache(environ=os.environ) -> str | None:
    """Turn on JAX's persistent compilation cache in `compilation_cache_dir`; returns the folder, or None
    when off or when the folder cannot be created (the command then compiles as without it). A cache
    folder the user gave JAX itself (JAX_COMPILATION_CACHE_DIR) is left to JAX, as is a threshold given in
    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS (default here: programs that compile in 0.1 s or more)."""
    from porejax import programs

    if environ.get("JAX_COMPILATION_CACHE_DIR"):
        path = environ["JAX_COMPILATION_CACHE_DIR"]
        programs.keep_in(os.path.join(path, PROGRAMS_FOLDER))
        return path
    path = compilation_cache_dir(environ)
    if path is None:
        programs.keep_in(None)
        return None
    try:
        os.makedirs(path, exist_ok=True)
    except OSError:
        programs.keep_in(None)
        return None
    import jax

    jax.config.update("jax_compilation_cache_dir", path)
    if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in environ:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", _MIN_COMPILE_SECONDS)
    programs.keep_in(os.path.join(path, PROGRAMS_FOLDER))
    return path
