"""Test set-up: two fake CPU devices (for data-parallel tests), fast compilation and the shared-data fixture.

Tests that read `../shared` (real volumes, peer reference values) use the `shared_dir` fixture: it skips
with a printed reason on a fresh clone without that folder; CI always has it (`.ci/run` checks).
"""

import os

# two fake CPU devices; and XLA's backend optimisation off: the suite's programs are tiny, so compiling them
# costs more than running them (measured in benchmarks/NOTES.md); values are unaffected beyond rounding
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2 --xla_backend_optimization_level=0")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("POREJAX_COMPILATION_CACHE", "off")  # no files in the home folder (tests/test_host.py checks it)

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

SHARED_DIR = Path(os.environ.get("POREJAX_SHARED", Path(__file__).resolve().parents[2] / "shared"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The shared data folder beside the checkout (`../shared`), or skip."""
    if not (SHARED_DIR / "data").is_dir():
        pytest.skip(f"shared data folder not found at {SHARED_DIR} (set POREJAX_SHARED to use another)")
    return SHARED_DIR


@pytest.fixture(scope="session")
def reference_values(shared_dir):
    """TauFactor / PoreSpy reference values for the shared volumes."""
    import json

    return json.loads((shared_dir / "reference" / "taufactor_porespy.json").read_text())


@pytest.fixture(autouse=True, scope="module")
def _fresh_compilation_caches():
    """Each test module compiles its own programs: after a module, drop JAX's compiled executables.

    One pytest process compiles thousands of XLA programs; each compiled CPU executable keeps its code
    mapped, and the accumulated mappings of the whole suite approach the kernel's per-process limit
    (vm.max_map_count), where the compiler fails. No module relies on another module's compilations.
    """
    yield
    import gc

    import jax

    jax.clear_caches()
    gc.collect()
