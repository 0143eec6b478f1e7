"""Self-describing checkpoint directories (orbax), shared by train, generate and interop.

Layout of a checkpoint directory DIR:

    DIR/porejax.json          metadata: format version, model config, PhaseMap (original label values,
                              names, voxel size), training config and data fingerprint when trained
    DIR/checkpoints/<step>/   orbax steps, each with the item "generator" (frozen generator variables:
                              params and the normalisation statistics generation uses) and, when
                              written by training, the item "state" (the full train state for resuming)

Every write is atomic: orbax finalises a step directory only when it is complete, and the metadata file
is written under a temporary name and renamed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

from porejax.errors import PorejaxError
from porejax.models import ModelConfig, init_variables
from porejax.volume import PhaseMap, atomic_path

FORMAT = "porejax-checkpoint"
FORMAT_VERSION = 1
METADATA_FILE = "porejax.json"
STEPS_DIR = "checkpoints"


def _manager(workdir: Path, keep: int | None = 3, keep_period: int = 0) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, keep_period=keep_period or None, create=True,
                                           enable_async_checkpointing=False)
    handlers = {name: ocp.StandardCheckpointHandler() for name in ("generator", "state")}
    return ocp.CheckpointManager(workdir.resolve() / STEPS_DIR, options=options, item_handlers=handlers)


def write_metadata(workdir: str | os.PathLike, model_config: ModelConfig, phase_map: PhaseMap,
                   **extra: Any) -> dict:
    """Write DIR/porejax.json atomically; `extra` holds e.g. `train` (config) and `data` (fingerprint)."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    meta = {"format": FORMAT, "version": FORMAT_VERSION, "model": model_config.to_dict(),
            "phase_map": phase_map.to_dict(), **extra}
    if model_config.n_phases != phase_map.n_phases:
        raise PorejaxError(f"model has {model_config.n_phases} phases but the PhaseMap has {phase_map.n_phases}")
    with atomic_path(workdir / METADATA_FILE) as tmp:
        tmp.write_text(json.dumps(meta, indent=2))
    return meta


def read_metadata(workdir: str | os.PathLike) -> dict:
    """The metadata of a checkpoint directory, validated."""
    workdir = Path(workdir)
    path = workdir / METADATA_FILE
    if not workdir.is_dir():
        raise PorejaxError(f"checkpoint directory not found: {workdir} (create one with `porejax init` "
                           "or `porejax train`)")
    if not path.exists():
        raise PorejaxError(f"{workdir} is not a porejax checkpoint directory (no {METADATA_FILE}); "
                           "point --checkpoint at the directory `porejax train` or `porejax init` wrote")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise PorejaxError(f"{path} is corrupt ({exc}); restore it or re-run `porejax init`") from None
    if meta.get("format") != FORMAT or meta.get("version", 0) > FORMAT_VERSION:
        raise PorejaxError(f"{path} has format {meta.get('format')} v{meta.get('version')}; this porejax "
                           f"reads {FORMAT} up to v{FORMAT_VERSION}: upgrade porejax")
    return meta


def model_and_phases(meta: dict) -> tuple[ModelConfig, PhaseMap]:
    return ModelConfig.from_dict(meta["model"]), PhaseMap.from_dict(meta["phase_map"])


def save(workdir: str | os.PathLike, step: int, generator: dict, state: Any = None, keep: int | None = 3,
         keep_period: int = 0) -> None:
    """Save step `step`: frozen generator variables and (optionally) the full train state. Older steps are
    deleted beyond the `keep` newest, except multiples of `keep_period` (> 0)."""
    items = {"generator": ocp.args.StandardSave(generator)}
    if state is not None:
        items["state"] = ocp.args.StandardSave(state)
    with _manager(Path(workdir), keep, keep_period) as manager:
        manager.save(int(step), args=ocp.args.Composite(**items), force=True)
        manager.wait_until_finished()


def steps(workdir: str | os.PathLike) -> list[int]:
    """Saved steps, oldest first."""
    if not (Path(workdir) / STEPS_DIR).is_dir():
        return []
    with _manager(Path(workdir)) as manager:
        return sorted(manager.all_steps())


def latest_step(workdir: str | os.PathLike) -> int | None:
    found = steps(workdir)
    return found[-1] if found else None


def _restore_item(workdir: Path, name: str, target: Any, step: int | None) -> tuple[Any, int]:
    saved = steps(workdir)
    if not saved:
        raise PorejaxError(f"{workdir} has no saved step yet (no {STEPS_DIR}/<step>/): train it or re-run init")
    step = saved[-1] if step is None else step
    if step not in saved:
        raise PorejaxError(f"{workdir} has no saved step {step}; its saved steps are {saved}")
    abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, target)
    try:
        with _manager(workdir) as manager:
            restored = manager.restore(step, args=ocp.args.Composite(**{name: ocp.args.StandardRestore(abstract)}))
    except FileNotFoundError:
        raise PorejaxError(f"step {step} of {workdir} has no '{name}' item") from None
    except ValueError as exc:
        raise PorejaxError(f"checkpoint {workdir} step {step} does not match its own config ({exc}); "
                           "was it written by another porejax version?") from None
    return restored[name], step


def restore_generator(workdir: str | os.PathLike, step: int | None = None) -> tuple[dict, dict, int]:
    """(metadata, frozen generator variables, step) of the newest (or given) step."""
    workdir = Path(workdir)
    meta = read_metadata(workdir)
    config, _ = model_and_phases(meta)
    target, _ = jax.eval_shape(lambda: init_variables(config, jax.random.PRNGKey(0)))
    variables, step = _restore_item(workdir, "generator", target, step)
    return meta, variables, step


def state_fields(workdir: str | os.PathLike, step: int) -> set[str]:
    """Names of the top-level fields of the train state saved at `step` (empty if it saved none)."""
    with _manager(Path(workdir)) as manager:
        metadata = manager.item_metadata(int(step)).get("state")
    return set() if metadata is None else set(metadata.keys())


def restore_state(workdir: str | os.PathLike, target: Any, step: int | None = None) -> tuple[Any, int]:
    """The full train state of the newest (or given) step, restored into the structure of `target`."""
    return _restore_item(Path(workdir), "state", target, step)
