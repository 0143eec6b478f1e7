"""Import a generator trained with the paper's PyTorch code (a `state_dict` of its DC-GAN generator).

Expected layout (`nn.Sequential` named `main`; a `module.` prefix from `nn.DataParallel` is accepted):
for each of the L hidden layers i = 0..L-1, `main.{3i}.weight` (ConvTranspose3d, no bias) and
`main.{3i+1}.{weight, bias, running_mean, running_var[, num_batches_tracked]}` (BatchNorm3d), then
`main.{3L}.weight` (the last ConvTranspose3d). Widths, latent channels and the number of phases are read
from the tensor shapes; the running statistics become the frozen statistics generation uses.

Weights map without flipping (porejax's transposed convolution has PyTorch's semantics, and PyTorch's
array axes D, H, W are porejax's x, y, z): ConvTranspose3d (C_in, C_out, k, k, k) -> (k, k, k, C_in, C_out).

torch is imported only to read a `.pth` file (`load_state_dict`); everything else takes any mapping of
names to arrays (torch tensors, numpy arrays).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from porejax import checkpoint
from porejax.errors import PorejaxError
from porejax.models import ModelConfig
from porejax.volume import PhaseMap

KERNEL_SIZE = 4
_PREFIXES = ("module.",)
_BN_STATS = ("running_mean", "running_var")


def load_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """A PyTorch state_dict file (`torch.save(netG.state_dict(), path)`) as float32 numpy arrays.

    Loaded with `weights_only=True` (no pickled code runs) onto the CPU; needs `pip install porejax[torch]`.
    """
    path = Path(path)
    if not path.is_file():
        raise PorejaxError(f"state_dict file not found: {path}")
    try:
        import torch
    except ImportError:
        raise PorejaxError("reading a .pth file needs PyTorch: pip install 'porejax[torch]'") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises pickle/runtime errors of several types for foreign files
        raise PorejaxError(
            f"cannot read {path} as a PyTorch state_dict ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); save it with "
            "torch.save(netG.state_dict(), path)"
        ) from None
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise PorejaxError(
            f"{path} does not hold a state_dict (a mapping of names to tensors); save the "
            "generator with torch.save(netG.state_dict(), path)"
        )
    return {str(k): v.detach().to(torch.float32).numpy() for k, v in obj.items()}


def _strip_prefix(state_dict: Mapping[str, Any]) -> dict[str, np.ndarray]:
    out = {}
    for key, value in state_dict.items():
        name = str(key)
        for prefix in _PREFIXES:
            if name.startswith(prefix):
                name = name[len(prefix) :]
        if hasattr(value, "detach"):  # a torch tensor: numpy() needs a plain float dtype
            value = value.detach().float().cpu().numpy()
        out[name] = np.asarray(value, dtype=np.float32)
    return out


def _key_order(key: str) -> tuple:
    """'main.10.weight' sorts after 'main.9.weight'."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in key.split("."))


def _take(sd: dict[str, np.ndarray], key: str, shape: tuple[int | None, ...], what: str) -> np.ndarray:
    """Pop sd[key], checking its shape (None: any size on that axis)."""
    expected = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"
    if key not in sd:
        raise PorejaxError(
            f"not a DC-GAN generator state_dict: missing key '{key}' ({what} of shape {expected}); "
            f"keys present: {', '.join(sorted(sd, key=_key_order)[:8])}{', ...' if len(sd) > 8 else ''}"
        )
    value = sd.pop(key)
    if value.ndim != len(shape) or any(s is not None and s != v for s, v in zip(shape, value.shape)):
        raise PorejaxError(
            f"not a DC-GAN generator state_dict: '{key}' has shape {tuple(value.shape)}, "
            f"expected {what} of shape {expected}"
        )
    return value


def generator_variables(
    state_dict: Mapping[str, Any], d_widths: Sequence[int] | None = None
) -> tuple[ModelConfig, dict]:
    """(ModelConfig, generator variables {"params", "batch_stats"}) from a PyTorch generator state_dict.

    n_phases, latent_channels and g_widths come from the tensor shapes. The discriminator is not part of
    a generator state_dict: `d_widths` (default 16, 32, 64, ... as deep as the generator, the paper's for
    depth 4) only completes the config. Raises PorejaxError naming the first key that does not fit.
    """
    sd = _strip_prefix(state_dict)
    k = KERNEL_SIZE
    kernels, norms = [], []
    weight = _take(sd, "main.0.weight", (None, None, k, k, k), "a ConvTranspose3d weight")
    latent_channels, index = weight.shape[0], 0
    while True:
        kernels.append(weight.transpose(2, 3, 4, 0, 1))  # (C_in, C_out, k, k, k) -> (k, k, k, C_in, C_out)
        c_out = weight.shape[1]
        bn = f"main.{index + 1}"
        if index > 0 and f"{bn}.weight" not in sd:  # a conv without BatchNorm after it is the last layer
            break
        norms.append(
            {
                name: _take(sd, f"{bn}.{name}", (c_out,), f"BatchNorm3d {name}")
                for name in ("weight", "bias") + _BN_STATS
            }
        )
        sd.pop(f"{bn}.num_batches_tracked", None)
        index += 3
        weight = _take(sd, f"main.{index}.weight", (c_out, None, k, k, k), "a ConvTranspose3d weight")
    if sd:
        key = min(sd, key=_key_order)
        raise PorejaxError(
            f"not a DC-GAN generator state_dict: unexpected key '{key}' of shape "
            f"{tuple(sd[key].shape)} after the last layer 'main.{index}.weight'"
        )
    g_widths = tuple(int(kern.shape[-1]) for kern in kernels[:-1])
    depth = len(g_widths)
    d_widths = tuple(16 * 2**i for i in range(depth)) if d_widths is None else tuple(d_widths)
    config = ModelConfig(
        n_phases=int(kernels[-1].shape[-1]), latent_channels=int(latent_channels), g_widths=g_widths, d_widths=d_widths
    )
    params: dict[str, Any] = {f"deconv{i}": {"kernel": kern} for i, kern in enumerate(kernels)}
    stats: dict[str, Any] = {}
    for i, bn in enumerate(norms):
        params[f"BatchNorm_{i}"] = {"scale": bn["weight"], "bias": bn["bias"]}
        stats[f"BatchNorm_{i}"] = {"mean": bn["running_mean"], "var": bn["running_var"]}
    if any(np.any(s["var"] < 0) for s in stats.values()):
        raise PorejaxError("the state_dict has negative BatchNorm running variances: it is corrupt")
    return config, {"params": params, "batch_stats": stats}


def import_generator(
    source: str | os.PathLike | Mapping[str, Any],
    workdir: str | os.PathLike,
    labels: Sequence[int] | None = None,
    names: Sequence[str] | None = None,
    voxel_size: float | None = None,
    d_widths: Sequence[int] | None = None,
) -> Path:
    """Write a porejax checkpoint directory (step 0) holding the generator of a PyTorch state_dict.

    `source`: a `.pth` file or a mapping of names to arrays. `labels`: the original label values of the
    phases in order (default 0, 1, ..., n_phases - 1); `names`, `voxel_size` (micrometres) as for
    PhaseMap. The result works with `porejax generate` / `load_generator`. Returns the directory.
    """
    workdir = Path(workdir)
    if checkpoint.latest_step(workdir) is not None:
        raise PorejaxError(f"{workdir} already holds a checkpoint: choose an empty output directory")
    if isinstance(source, Mapping):
        state_dict, origin = source, {"format": "pytorch-state-dict"}
    else:
        state_dict = load_state_dict(source)
        digest = hashlib.sha256(Path(source).read_bytes()).hexdigest()
        origin = {"format": "pytorch-state-dict", "file": Path(source).name, "sha256": digest}
    config, variables = generator_variables(state_dict, d_widths)
    labels = tuple(range(config.n_phases)) if labels is None else tuple(int(v) for v in labels)
    if len(labels) != config.n_phases:
        raise PorejaxError(
            f"the generator has {config.n_phases} phases but {len(labels)} labels were given "
            f"({list(labels)}): give one label value per phase"
        )
    phase_map = PhaseMap(labels, None if names is None else tuple(names), voxel_size)
    checkpoint.write_metadata(workdir, config, phase_map, imported_from=origin)
    checkpoint.save(workdir, 0, generator=variables)
    return workdir
