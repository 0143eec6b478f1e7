"""Multi-process training: two local processes of one CPU device each train exactly like one process
with two devices, write each checkpoint once, and resume from (and into) another process count."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from porejax import checkpoint, synthetic

ROOT = Path(__file__).resolve().parents[1]
# what `porejax train` does, with a micro model (8^3 crops) so that each process compiles in seconds
WORKER = """
import json, sys
import numpy as np
from porejax import train
from porejax.models import ModelConfig
from porejax.volume import PhaseMap
train.initialize_distributed()
import jax
data, workdir, steps, resume = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "resume"
config = train.TrainConfig(steps=steps, batch_size=4, augment=True, log_every=1, eval_every=1000,
                           checkpoint_every=5, eval_samples=2, standing_batches=2)
model = ModelConfig(latent_channels=4, g_widths=(4,), d_widths=(4,))
train.train([np.load(data)], PhaseMap((0, 85, 170)), workdir, model, config, resume=resume, progress=False)
print(json.dumps({"process": jax.process_index(), "processes": jax.process_count(), "devices": jax.device_count()}))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(data: Path, workdir: Path, steps: int, processes: int, resume: bool = False) -> list[dict]:
    """Train in `processes` processes of one CPU device each, or (processes=0) one process with two."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}
    env["PYTHONPATH"] = str(ROOT)
    argv = [sys.executable, "-c", WORKER, str(data), str(workdir), str(steps), "resume" if resume else "new"]
    fast = "--xla_backend_optimization_level=0"  # as conftest.py: tiny programs, compile time dominates
    if processes == 0:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count=2 {fast}"
        envs = [env]
    else:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count=1 {fast}"
        address = f"127.0.0.1:{_free_port()}"
        envs = [
            {**env, "JAX_COORDINATOR_ADDRESS": address, "JAX_NUM_PROCESSES": str(processes), "JAX_PROCESS_ID": str(i)}
            for i in range(processes)
        ]
    procs = [
        subprocess.Popen(argv, env=e, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for e in envs
    ]
    outputs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]
    return [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]


def _losses(workdir: Path) -> np.ndarray:
    records = [json.loads(line) for line in (workdir / "log.jsonl").read_text().splitlines()]
    return np.asarray([[r["step"], r["loss_d"], r["loss_g"], r["d_real"], r["d_fake"]] for r in records])


def _shared_files(workdir: Path) -> list[str]:
    """Checkpoint files other than the per-process ones and the data files (named by random hashes)."""
    return sorted(
        str(p.relative_to(workdir))
        for p in (workdir / "checkpoints").rglob("*")
        if p.is_file() and "process_" not in str(p) and p.parent.name != "d"
    )


def _array_bytes(workdir: Path, item: str) -> int:
    """Bytes of array data that all processes wrote for `item` of step 10."""
    return sum(p.stat().st_size for p in (workdir / "checkpoints" / "10" / item).glob("ocdbt.process_*/d/*"))


@pytest.mark.slow
def test_two_processes_train_like_one_process_with_two_devices(tmp_path):
    data = tmp_path / "cathode.npy"
    np.save(data, synthetic.cathode(12, seed=0))
    one, two = tmp_path / "one", tmp_path / "two"
    assert _run(data, one, 10, 0) == [{"process": 0, "processes": 1, "devices": 2}]
    assert _run(data, two, 10, 2) == [{"process": i, "processes": 2, "devices": 2} for i in range(2)]
    reference = _losses(one)
    assert reference[:, 0].tolist() == list(range(1, 11))
    np.testing.assert_allclose(_losses(two), reference, rtol=0, atol=1e-5)  # each record logged once
    assert checkpoint.steps(two) == checkpoint.steps(one) == [5, 10]
    # one checkpoint, written once: the same step files as from one process; orbax splits the bytes of the
    # replicated arrays between the processes (ocdbt.process_<i>, array_metadatas/process_<i>), each once
    assert _shared_files(two) == _shared_files(one)
    assert {p.name for p in (two / "checkpoints" / "10" / "state").glob("ocdbt.process_*")} == {
        "ocdbt.process_0",
        "ocdbt.process_1",
    }
    for name in ("generator", "state"):  # written twice would be ~2x (the rest: compression, per-file overhead)
        assert _array_bytes(two, name) < 1.3 * _array_bytes(one, name)
    # resume across process counts: the two-process run on one process, the one-process run on two
    _run(data, two, 12, 0, resume=True)
    _run(data, one, 12, 2, resume=True)
    np.testing.assert_allclose(_losses(two), _losses(one), rtol=0, atol=1e-5)
    assert _losses(one)[:, 0].tolist() == list(range(1, 13)) and checkpoint.steps(one) == [5, 10, 12]
