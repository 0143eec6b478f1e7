"""Process-wide host settings: freed blocks are reused instead of being faulted in again (glibc); compiled
programs are kept on disk between runs of the command."""

import os
import shutil
import subprocess
import sys

import pytest

# a fresh process (the setting is process-wide and must come first): 64 MiB allocated, touched and freed,
# then the page faults of three more rounds
ROUNDS = """
import resource, sys
import numpy as np
from porejax.host import reuse_freed_memory

applied = reuse_freed_memory() if sys.argv[1] == "reuse" else None

def allocate_touch_free():
    block = np.empty(64 << 20, np.uint8)
    block.fill(1)
    del block

allocate_touch_free()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
    allocate_touch_free()
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _rounds(mode: str) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", ROUNDS, mode], capture_output=True, text=True, check=True)
    applied, faults = out.stdout.split()
    return applied, int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc options")
def test_freed_blocks_are_reused():
    _, default_faults = _rounds("default")
    if default_faults < 30:
        pytest.skip(f"this C library already reuses freed blocks ({default_faults} page faults in 3 rounds)")
    applied, faults = _rounds("reuse")
    assert applied == "True"
    assert faults * 10 < default_faults, (faults, default_faults)


@pytest.mark.parametrize(
    "env, expected",
    [({"JAX_PLATFORMS": "cpu"}, True), ({"JAX_PLATFORMS": "cuda,cpu"}, False), ({"JAX_PLATFORM_NAME": "tpu"}, False)],
)
def test_cpu_backend_is_expected_from_the_platform_setting(monkeypatch, env, expected):
    from porejax.host import cpu_backend_expected

    monkeypatch.delenv("JAX_PLATFORMS", raising=False)
    monkeypatch.delenv("JAX_PLATFORM_NAME", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert cpu_backend_expected() is expected


def test_cpu_backend_is_expected_without_accelerator_plugins(monkeypatch):
    import importlib.util

    from porejax.host import cpu_backend_expected

    monkeypatch.delenv("JAX_PLATFORMS", raising=False)
    monkeypatch.delenv("JAX_PLATFORM_NAME", raising=False)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: None if name in ("jax_plugins", "libtpu") else real_find_spec(name)
    )
    assert cpu_backend_expected() is True
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: object() if name == "jax_plugins" else real_find_spec(name)
    )
    assert cpu_backend_expected() is False


def test_a_process_whose_jax_runtime_started_keeps_its_allocator():
    """The setting is applied before JAX's first computation only (a notebook or a test calling the CLI's
    `main` keeps glibc's defaults): importing JAX alone does not count as started."""
    code = (
        "import jax, jax.numpy as jnp\n"
        "import porejax.host as h\n"
        "before = h._jax_runtime_started()\n"
        "jnp.ones(2).block_until_ready()\n"
        "print(before, h._jax_runtime_started(), h.reuse_freed_memory())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True", "False"]


@pytest.mark.parametrize(
    "env, expected",
    [
        ({"POREJAX_COMPILATION_CACHE": "off"}, None),
        ({"POREJAX_COMPILATION_CACHE": "/data/xla"}, "/data/xla"),
        ({"XDG_CACHE_HOME": "/xdg"}, "/xdg/porejax/xla"),
        ({}, "/home/user/.cache/porejax/xla"),
    ],
)
def test_the_compilation_cache_folder_follows_the_environment(monkeypatch, env, expected):
    from porejax.host import compilation_cache_dir

    monkeypatch.setenv("HOME", "/home/user")
    assert compilation_cache_dir(env) == expected


def test_a_second_run_of_a_command_loads_its_programs_from_the_cache(tmp_path):
    """The first `porejax generate` writes its compiled programs; the second, with the same sizes, finds
    them all (no new cache entries) and writes the same bytes."""
    cache = tmp_path / "cache"
    env = dict(os.environ, POREJAX_COMPILATION_CACHE=str(cache), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")

    def porejax(*args: str) -> None:
        cmd = [sys.executable, "-m", "porejax.cli", *args]
        subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)

    ck = tmp_path / "ck"
    porejax("init", "--workdir", str(ck), "--preset", "tiny", "--labels", "0,85,170")
    generate = ["generate", "--checkpoint", str(ck), "--size", "32", "--seed", "3", "--out"]
    porejax(*generate, str(tmp_path / "first.tif"))
    entries = sorted(os.listdir(cache))
    assert entries
    porejax(*generate, str(tmp_path / "second.tif"))
    assert sorted(os.listdir(cache)) == entries
    assert (tmp_path / "first.tif").read_bytes() == (tmp_path / "second.tif").read_bytes()
    # whole programs (porejax.programs) lost while JAX's cache holds them: kept again, and they run
    kept = sorted(os.listdir(cache / "programs"))
    assert kept
    shutil.rmtree(cache / "programs")
    for name in ("third.tif", "fourth.tif"):
        porejax(*generate, str(tmp_path / name))
        assert (tmp_path / "first.tif").read_bytes() == (tmp_path / name).read_bytes()
    assert sorted(os.listdir(cache / "programs")) == kept
