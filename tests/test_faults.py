"""Faults and bad input: one line and exit status 2 for every failure, a locked workdir, nothing partial left."""

import errno
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
import tifffile

from porejax import checkpoint, cli, lock, synthetic, train
from porejax.errors import PorejaxError
from porejax.metrics.characterise import characterise
from porejax.models import ModelConfig, init_variables
from porejax.volume import PhaseMap, validate_volume

MICRO = ModelConfig(latent_channels=4, g_widths=(4,), d_widths=(4,))  # 8^3 crops: compiles fast
PHASES = PhaseMap((0, 85, 170), ("pore", "nmc", "binder"), 0.5)
QUIET = {
    "log_every": 1,
    "eval_every": 1000,
    "checkpoint_every": 2,
    "eval_samples": 2,
    "standing_batches": 2,
    "batch_size": 4,
}
FULL_DISK = ValueError(
    'RESOURCE_EXHAUSTED: Error writing "a/0" in OCDBT database: Failed to write 230143 bytes '
    "to file 11: No space left on device [os_error_code='28']"
)  # what tensorstore raises


def _one_line_error(capsys, argv, match: str) -> str:
    """Run the CLI on `argv`; assert exit 2 and a single stderr line (no traceback) matching `match`."""
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert match in err, err
    return err


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A checkpoint directory with generator-only steps 10 and 20."""
    path = tmp_path_factory.mktemp("ckpt")
    checkpoint.write_metadata(path, MICRO, PHASES)
    g_vars, _ = init_variables(MICRO, jax.random.PRNGKey(0))
    for step in (10, 20):
        checkpoint.save(path, step, g_vars)
    return path


def _copy(src, dst):
    subprocess.run(["cp", "-r", str(src), str(dst)], check=True)
    return dst


def test_os_errors_of_outputs_are_one_line_naming_the_path_and_leave_nothing(tmp_path, capsys, monkeypatch):
    (tmp_path / "taken.tif").mkdir()
    _one_line_error(
        capsys, ["synth", "cathode", "--size", "16", "--out", str(tmp_path / "taken.tif")], "is a directory"
    )
    _one_line_error(
        capsys,
        ["synth", "cathode", "--size", "16", "--out", str(tmp_path / "no" / "c.tif")],
        "does not exist: create it first",
    )

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", os.path.join(kwargs["dir"], "tmpname"))

    with monkeypatch.context() as patch:
        patch.setattr(tempfile, "mkstemp", read_only)
        err = _one_line_error(
            capsys, ["synth", "cathode", "--size", "16", "--out", str(tmp_path / "c.tif")], "read-only file system"
        )
        assert str(tmp_path / "c.tif") in err
        with pytest.raises(OSError):  # --debug shows the exception itself
            cli.main(["--debug", "synth", "cathode", "--size", "16", "--out", str(tmp_path / "c.tif")])

    def disk_full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tifffile.TiffWriter, "write", disk_full)
    _one_line_error(
        capsys,
        ["synth", "cathode", "--size", "16", "--out", str(tmp_path / "c.tif")],
        f"no space left on device writing {tmp_path / 'c.tif'}: it needs 0.0 MB",
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken.tif"]
    msg = cli.os_error_message(FileExistsError(errno.EEXIST, "File exists", "report"))
    assert msg == "report already exists: remove it or choose another name"


@pytest.mark.parametrize(
    "content,problem",
    [
        (b"\xff\xfe{}", "not UTF-8 text"),
        (b'{"format": ', "invalid JSON"),
        (b"[]", "a JSON array, not an object"),
        (b"null", "a JSON null, not an object"),
        (b"{}", "no 'format', 'version', 'model', 'phase_map'"),
    ],
)
def test_a_corrupt_porejax_json_is_named_never_as_another_version(ckpt, tmp_path, capsys, content, problem):
    work = _copy(ckpt, tmp_path / "ck")
    (work / checkpoint.METADATA_FILE).write_bytes(content)
    err = _one_line_error(capsys, ["info", "--checkpoint", str(work)], "is corrupt")
    assert problem in err and "upgrade" not in err and "version?" not in err


def test_edited_metadata_is_refused_before_generating(ckpt, tmp_path, capsys):
    work = _copy(ckpt, tmp_path / "ck")
    meta = json.loads((work / checkpoint.METADATA_FILE).read_text())
    meta["phase_map"]["labels"], meta["phase_map"]["names"] = [0, 85], None
    (work / checkpoint.METADATA_FILE).write_text(json.dumps(meta))
    out = ["--latent-size", "1", "--out", str(tmp_path / "g.tif")]
    _one_line_error(capsys, ["generate", "--checkpoint", str(work), *out], "the model has 3 phases but the phase map")
    meta["phase_map"]["labels"], meta["model"]["n_phases"] = [0, 1, 2, 3], 4
    (work / checkpoint.METADATA_FILE).write_text(json.dumps(meta))
    _one_line_error(capsys, ["generate", "--checkpoint", str(work), *out], "(4, 4, 4, 4, 3) vs (4, 4, 4, 4, 4)")
    assert not (tmp_path / "g.tif").exists()


def test_missing_or_truncated_array_files_are_named_with_an_older_step(ckpt, tmp_path, capsys):
    work = _copy(ckpt, tmp_path / "ck")
    data = sorted((work / "checkpoints" / "20" / "generator").rglob("ocdbt.process_0/d/*"), key=os.path.getsize)
    with open(data[-1], "r+b") as fh:
        fh.truncate(100)
    out = ["--latent-size", "1", "--out", str(tmp_path / "g.tif")]
    _one_line_error(capsys, ["generate", "--checkpoint", str(work), *out], "array files of step 20 in ")
    _one_line_error(
        capsys, ["generate", "--checkpoint", str(work), *out], "are missing or truncated: restore them or use --step 10"
    )
    assert cli.main(["generate", "--checkpoint", str(work), "--step", "10", *out]) == 0
    (work / "checkpoints" / "10" / "generator" / "_METADATA").unlink()
    _one_line_error(capsys, ["generate", "--checkpoint", str(work), "--step", "10", *out], "array files of step 10")


def test_a_second_run_is_refused_naming_the_owner_and_a_killed_owner_s_lock_is_taken_over(tmp_path, capsys):
    with lock.workdir_lock(tmp_path / "run"):
        owner = json.loads((tmp_path / "run" / lock.LOCK_FILE).read_text())
        with pytest.raises(
            PorejaxError,
            match=f"in use by another training run \\(PID {os.getpid()} on host .* since {re.escape(owner['started'])}",
        ):
            train.train([synthetic.cathode(12)], PHASES, tmp_path / "run", MICRO, train.TrainConfig(**QUIET))
    assert not (tmp_path / "run").exists()  # created by the lock, left empty: removed
    script = (
        "import os, signal; from porejax.lock import workdir_lock\n"
        f"with workdir_lock({str(tmp_path / 'run')!r}): os.kill(os.getpid(), signal.SIGKILL)"
    )
    killed = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "PYTHONPATH": str(Path(lock.__file__).parents[1])},
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL and (tmp_path / "run" / lock.LOCK_FILE).exists()
    with lock.workdir_lock(tmp_path / "run"):
        assert json.loads((tmp_path / "run" / lock.LOCK_FILE).read_text())["pid"] == os.getpid()
    assert f"taking over the lock of {tmp_path / 'run'}" in capsys.readouterr().err
    assert not (tmp_path / "run" / lock.LOCK_FILE).exists()


def test_a_full_disk_while_training_keeps_earlier_steps_and_resume_continues(tmp_path, monkeypatch, capsys):
    volume = synthetic.cathode(12, seed=0)
    save = ocp.StandardCheckpointHandler.async_save
    calls = []

    def full_from_the_second_save(self, *args, **kwargs):
        calls.append(1)
        if len(calls) > 2:  # two items per step: the generator and the state of step 1
            raise FULL_DISK
        return save(self, *args, **kwargs)

    monkeypatch.setattr(ocp.StandardCheckpointHandler, "async_save", full_from_the_second_save)
    config = train.TrainConfig(steps=2, **{**QUIET, "checkpoint_every": 1})
    with pytest.raises(
        PorejaxError,
        match=r"no space left on device saving step 2 in .*: a checkpoint needs about "
        r"[0-9.]+ MB \([0-9.]+ MB free\); free that much, then continue with "
        r"--resume \(saved steps \[1\] are intact\)",
    ):
        train.train([volume], PHASES, tmp_path, MICRO, config, progress=False)
    assert checkpoint.steps(tmp_path) == [1]
    assert list((tmp_path / "checkpoints").glob("*tmp*")) == [] and not (tmp_path / lock.LOCK_FILE).exists()
    monkeypatch.setattr(ocp.StandardCheckpointHandler, "async_save", save)
    with open(tmp_path / train.LOG_FILE, "a") as fh:
        fh.write('{"step": 3, "loss')  # a log line cut short by the full disk
    train.train([volume], PHASES, tmp_path, MICRO, config, resume=True, progress=False)
    assert checkpoint.steps(tmp_path) == [1, 2]
    assert [json.loads(line)["step"] for line in (tmp_path / train.LOG_FILE).read_text().splitlines()] == [1, 2]


def test_resume_into_a_missing_workdir_is_an_error(tmp_path):
    with pytest.raises(PorejaxError, match="cannot resume .*nope: it does not exist: .* drop --resume"):
        train.train([synthetic.cathode(12)], PHASES, tmp_path / "nope", MICRO, train.TrainConfig(**QUIET), resume=True)
    assert not (tmp_path / "nope").exists()


def test_demo_with_bad_steps_writes_nothing(tmp_path, capsys):
    _one_line_error(capsys, ["demo", "--out", str(tmp_path / "d0"), "--steps", "-1"], "steps must be at least 1")
    assert not (tmp_path / "d0").exists()


def test_rgb_images_and_greyscale_are_named(tmp_path, capsys):
    rgb = np.random.default_rng(0).integers(0, 3, (64, 64, 3), dtype=np.uint8)
    with pytest.raises(PorejaxError, match=r"\(64, 64, 3\) looks like an RGB image .*segment it into labels first"):
        validate_volume(rgb)
    tifffile.imwrite(tmp_path / "rgb.tif", np.full((64, 64, 3), 255, np.uint8), photometric="rgb")
    _one_line_error(
        capsys,
        ["init", "--workdir", str(tmp_path / "ck"), "--data", str(tmp_path / "rgb.tif")],
        "is an RGB image (TIFF photometric RGB, 3 samples per pixel): segment it into labels first",
    )
    grey = np.arange(300, dtype=np.uint16).reshape(3, 10, 10)
    with pytest.raises(PorejaxError, match="greyscale image") as raised:
        validate_volume(grey)
    assert "--max-phases" not in str(raised.value)


def test_a_periodic_size_off_the_period_unit_names_one_valid_size(ckpt, tmp_path, capsys):
    unit = MICRO.period_unit
    _one_line_error(
        capsys,
        [
            "generate",
            "--checkpoint",
            str(ckpt),
            "--size",
            str(unit - 1),
            "--periodic",
            "xyz",
            "--out",
            str(tmp_path / "g.tif"),
        ],
        f"got {unit - 1}: use {unit}",
    )


def test_a_one_voxel_volume_is_characterised():
    result = characterise(np.zeros((1, 1, 1), np.uint8), 1.0, tortuosity=False)
    assert result.tpcf_lag_um.tolist() == [0.0] and result.tpcf.tolist() == [[[1.0], [1.0], [1.0]]]
