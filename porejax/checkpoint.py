"""Self-describing checkpoint directories (orbax), shared by train, generate and interop.

Layout of a checkpoint directory DIR:

    DIR/porejax.json          metadata: format version, model config, PhaseMap (original label values,
                              names, voxel size), training config and data fingerprint when trained
    DIR/checkpoints/<step>/   orbax steps, each with the item "generator" (frozen generator variables:
                              params and the normalisation statistics generation uses) and, when
                              written by training, the item "state" (the full train state for resuming)

Every write is atomic: orbax finalises a step directory only when it is complete (a failed save removes
its temporary folder), and the metadata file is written under a temporary name and renamed. Reading
validates: porejax.json's syntax, keys and types, and the saved array shapes against it.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

from porejax.errors import PorejaxError
from porejax.models import ModelConfig, init_generator_variables
from porejax.volume import PhaseMap, atomic_path

FORMAT = "porejax-checkpoint"
FORMAT_VERSION = 1
METADATA_FILE = "porejax.json"
STEPS_DIR = "checkpoints"


def write_metadata(workdir: str | os.PathLike, model_config: ModelConfig, phase_map: PhaseMap, **extra: Any) -> dict:
    """Write DIR/porejax.json atomically; `extra` holds e.g. `train` (config) and `data` (fingerprint)."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    meta = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "model": model_config.to_dict(),
        "phase_map": phase_map.to_dict(),
        **extra,
    }
    if model_config.n_phases != phase_map.n_phases:
        raise PorejaxError(f"model has {model_config.n_phases} phases but the PhaseMap has {phase_map.n_phases}")
    with atomic_path(workdir / METADATA_FILE) as tmp:
        tmp.write_text(json.dumps(meta, indent=2))
    return meta


def read_metadata(workdir: str | os.PathLike) -> dict:
    """The metadata of a checkpoint directory, validated: JSON syntax and types, required keys, the model
    config and PhaseMap, and their phase counts against each other."""
    workdir = Path(workdir)
    path = workdir / METADATA_FILE
    if not workdir.is_dir():
        raise PorejaxError(
            f"checkpoint directory not found: {workdir} (create one with `porejax init` or `porejax train`)"
        )
    if not path.exists():
        raise PorejaxError(
            f"{workdir} is not a porejax checkpoint directory (no {METADATA_FILE}); "
            "point --checkpoint at the directory `porejax train` or `porejax init` wrote"
        )
    corrupt = f"{path} is corrupt: restore it from a copy or re-create the checkpoint"
    try:
        meta = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise PorejaxError(f"{corrupt} (not UTF-8 text: byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise PorejaxError(f"{corrupt} (invalid JSON: {exc})") from None
    if not isinstance(meta, dict):
        raise PorejaxError(f"{corrupt} (a JSON {_json_type(meta)}, not an object)")
    missing = [key for key in ("format", "version", "model", "phase_map") if key not in meta]
    if missing:
        raise PorejaxError(f"{corrupt} (no {', '.join(repr(k) for k in missing)})")
    if meta["format"] != FORMAT or not isinstance(meta["version"], int):
        raise PorejaxError(
            f"{corrupt} (format {meta['format']!r} version {meta['version']!r}, expected "
            f"{FORMAT!r} and an integer version)"
        )
    if meta["version"] > FORMAT_VERSION:
        raise PorejaxError(
            f"{path} has format version {meta['version']}; this porejax reads {FORMAT} up to "
            f"version {FORMAT_VERSION}: upgrade porejax"
        )
    config, phase_map = _model_and_phases(meta, corrupt)
    if config.n_phases != phase_map.n_phases:
        raise PorejaxError(
            f"{corrupt} (the model has {config.n_phases} phases but the phase map "
            f"{list(phase_map.labels)} has {phase_map.n_phases})"
        )
    return meta


def _json_type(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _model_and_phases(meta: dict, corrupt: str) -> tuple[ModelConfig, PhaseMap]:
    for key in ("model", "phase_map"):
        if not isinstance(meta[key], dict):
            raise PorejaxError(f"{corrupt} ({key!r} is a JSON {_json_type(meta[key])}, not an object)")
    try:
        return ModelConfig.from_dict(meta["model"]), PhaseMap.from_dict(meta["phase_map"])
    except (TypeError, ValueError, KeyError) as exc:  # PorejaxError is a ValueError
        raise PorejaxError(f"{corrupt} (model or phase map: {type(exc).__name__}: {exc})") from None


def model_and_phases(meta: dict) -> tuple[ModelConfig, PhaseMap]:
    """The model config and PhaseMap of metadata from `read_metadata`."""
    return ModelConfig.from_dict(meta["model"]), PhaseMap.from_dict(meta["phase_map"])


def _partial_steps(steps_dir: Path) -> list[Path]:
    """Temporary step folders orbax leaves when a save fails or is killed."""
    return sorted(steps_dir.glob("*.orbax-checkpoint-tmp*")) if steps_dir.is_dir() else []


def _nbytes(tree: Any) -> int:
    return sum(int(leaf.size) * leaf.dtype.itemsize for leaf in jax.tree_util.tree_leaves(tree))


def _disk_full(exc: BaseException) -> bool:
    """True for an error of a full disk: an OSError ENOSPC, or tensorstore's (raised as a ValueError)."""
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    return "No space left on device" in str(exc) or f"os_error_code='{errno.ENOSPC}'" in str(exc)


class Checkpoints:
    """The saved steps of a checkpoint directory, through one orbax CheckpointManager (opened on first use).

    Open one per run (`with Checkpoints(workdir, keep, keep_period) as store`): saves delete older steps
    beyond the `keep` newest, except multiples of `keep_period` (> 0). Reading never creates anything.
    """

    def __init__(self, workdir: str | os.PathLike, keep: int | None = 3, keep_period: int = 0):
        self.workdir = Path(workdir)
        self.steps_dir = self.workdir.resolve() / STEPS_DIR
        self._options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, keep_period=keep_period or None, create=True, enable_async_checkpointing=False
        )
        self._manager: ocp.CheckpointManager | None = None

    def __enter__(self) -> Checkpoints:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        if self._manager is not None:
            self._manager.close()
            self._manager = None

    def _open(self) -> ocp.CheckpointManager:
        if self._manager is None:
            handlers = {name: ocp.StandardCheckpointHandler() for name in ("generator", "state")}
            self._manager = ocp.CheckpointManager(self.steps_dir, options=self._options, item_handlers=handlers)
        return self._manager

    def steps(self) -> list[int]:
        """Saved steps, oldest first."""
        if not self.steps_dir.is_dir():
            return []
        return sorted(self._open().all_steps())

    def remove_partial(self) -> list[Path]:
        """Delete the temporary folders of failed or killed saves; returns them."""
        partial = _partial_steps(self.steps_dir)
        for path in partial:
            shutil.rmtree(path, ignore_errors=True)
        return partial

    def save(self, step: int, generator: dict, state: Any = None) -> None:
        """Save step `step`: frozen generator variables and (optionally) the full train state.

        A failed save leaves no partial step behind (earlier steps stay usable); a full disk is a
        PorejaxError saying how much space a checkpoint needs.
        """
        items = {"generator": ocp.args.StandardSave(generator)}
        if state is not None:
            items["state"] = ocp.args.StandardSave(state)
        manager = self._open()
        try:
            manager.save(int(step), args=ocp.args.Composite(**items), force=True)
            manager.wait_until_finished()
        except BaseException as exc:
            self.remove_partial()
            if not _disk_full(exc):
                raise
            need_mb = _nbytes((generator, state)) / 2**20
            free_mb = shutil.disk_usage(self.steps_dir).free / 2**20
            raise PorejaxError(
                f"no space left on device saving step {step} in {self.steps_dir}: a checkpoint needs "
                f"about {need_mb:.1f} MB ({free_mb:.1f} MB free); free that much, then continue "
                f"with --resume (saved steps {self.steps()} are intact)"
            ) from None

    def restore(self, name: str, target: Any, step: int | None = None) -> tuple[Any, int]:
        """Item `name` ("generator" or "state") of the newest (or given) step, in the structure of `target`
        (arrays or shape-dtype structs); array files that are missing, truncated or of other shapes than
        `target`'s are a PorejaxError naming them."""
        saved = self.steps()
        if not saved:
            raise PorejaxError(
                f"{self.workdir} has no saved step yet (no {STEPS_DIR}/<step>/): train it or re-run init"
            )
        step = saved[-1] if step is None else step
        if step not in saved:
            raise PorejaxError(f"{self.workdir} has no saved step {step}; its saved steps are {saved}")
        older = [s for s in saved if s < step]
        fix = f"restore them or use --step {older[-1]}" if older else "restore them from a copy"
        damaged = f"array files of step {step} in {self.steps_dir} are missing or truncated: {fix}"
        _check_shapes(self._item_metadata(step, name, damaged), target, f"step {step} of {self.workdir}")
        abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, target)
        try:
            restored = self._open().restore(step, args=ocp.args.Composite(**{name: ocp.args.StandardRestore(abstract)}))
        except Exception:  # orbax and tensorstore raise Exception, ValueError, FileNotFoundError...
            raise PorejaxError(damaged) from None
        return restored[name], step

    def _item_metadata(self, step: int, name: str, damaged: str) -> Any:
        if not (self.steps_dir / str(step) / name).is_dir():
            raise PorejaxError(f"step {step} of {self.workdir} has no '{name}' item")
        try:
            metadata = self._open().item_metadata(int(step)).get(name)
        except Exception:
            raise PorejaxError(damaged) from None
        if metadata is None:
            raise PorejaxError(damaged)
        return metadata

    def state_fields(self, step: int) -> set[str]:
        """Names of the top-level fields of the train state saved at `step` (empty if it saved none)."""
        metadata = self._open().item_metadata(int(step)).get("state")
        return set() if metadata is None else set(metadata.keys())


def _leaf_shapes(tree: Any) -> dict[str, tuple[int, ...]]:
    """{"a/0/mu/conv0/kernel": shape} of a tree's arrays, with dict keys, indices and attributes alike
    (orbax's metadata tree has dicts where the train state has named tuples)."""

    def name(entry) -> str:
        return str(getattr(entry, "key", getattr(entry, "name", getattr(entry, "idx", entry))))

    return {
        "/".join(name(e) for e in path): tuple(leaf.shape)
        for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
        if hasattr(leaf, "shape")
    }


def _check_shapes(metadata: Any, target: Any, what: str) -> None:
    """Array shapes saved (orbax metadata) against those porejax.json implies (`target`)."""
    saved, wanted = _leaf_shapes(metadata), _leaf_shapes(target)
    differ = [f"{k} {saved.get(k, 'absent')} vs {shape}" for k, shape in wanted.items() if saved.get(k) != shape]
    if differ:
        raise PorejaxError(
            f"the arrays of {what} do not fit its {METADATA_FILE} (saved vs expected shapes: "
            f"{'; '.join(differ[:3])}): restore {METADATA_FILE} (e.g. its phase labels and model) "
            "from a copy"
        )


def save(
    workdir: str | os.PathLike,
    step: int,
    generator: dict,
    state: Any = None,
    keep: int | None = 3,
    keep_period: int = 0,
) -> None:
    """Save step `step` of `workdir` (see `Checkpoints.save`)."""
    with Checkpoints(workdir, keep, keep_period) as store:
        store.save(step, generator, state)


def steps(workdir: str | os.PathLike) -> list[int]:
    """Saved steps, oldest first."""
    with Checkpoints(workdir) as store:
        return store.steps()


def latest_step(workdir: str | os.PathLike) -> int | None:
    found = steps(workdir)
    return found[-1] if found else None


def _generator_target(meta: dict) -> dict:
    """Shape-dtype structs of the generator variables that metadata `meta` describes."""
    config, _ = model_and_phases(meta)
    return jax.eval_shape(lambda: init_generator_variables(config, jax.random.PRNGKey(0)))


def restore_generator(workdir: str | os.PathLike, step: int | None = None) -> tuple[dict, dict, int]:
    """(metadata, frozen generator variables, step) of the newest (or given) step."""
    meta = read_metadata(workdir)
    with Checkpoints(workdir) as store:
        variables, step = store.restore("generator", _generator_target(meta), step)
    return meta, variables, step


def state_fields(workdir: str | os.PathLike, step: int) -> set[str]:
    """Names of the top-level fields of the train state saved at `step` (empty if it saved none)."""
    with Checkpoints(workdir) as store:
        return store.state_fields(step)


def restore_state(workdir: str | os.PathLike, target: Any, step: int | None = None) -> tuple[Any, int]:
    """The full train state of the newest (or given) step, restored into the structure of `target`."""
    with Checkpoints(workdir) as store:
        return store.restore("state", target, step)
