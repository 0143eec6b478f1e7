"""PyTorch state_dict -> porejax checkpoint: outputs equal the PyTorch generator's (eval mode)."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from porejax import checkpoint  # noqa: E402
from porejax.cli import main as cli_main  # noqa: E402
from porejax.errors import PorejaxError  # noqa: E402
from porejax.generate import load_generator  # noqa: E402
from porejax.interop.torch import generator_variables, import_generator, load_state_dict  # noqa: E402

_SPEC = importlib.util.spec_from_file_location(
    "torch_reference", Path(__file__).resolve().parents[1] / "benchmarks" / "torch_reference.py"
)
torch_reference = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(torch_reference)

TINY = dict(n_phases=3, latent_channels=5, widths=(16, 8, 8, 4))


def _random_generator(seed: int, weight_std: float = 0.2, **shape) -> torch.nn.Module:
    """A PyTorch generator with random weights and randomised BatchNorm running statistics, eval mode.

    The default weight std (larger than the init's 0.02) makes tiny widths give confident outputs."""
    torch.manual_seed(seed)
    net = torch_reference.Generator(**shape)
    net.apply(torch_reference.init_weights)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.ConvTranspose3d):
                module.weight.normal_(0.0, weight_std)
            if isinstance(module, torch.nn.BatchNorm3d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0.0, 0.3)
                module.running_mean.normal_(0.0, 0.5)
                module.running_var.uniform_(0.2, 3.0)
    return net.eval()


def _torch_output(net: torch.nn.Module, z: np.ndarray) -> np.ndarray:
    """PyTorch output for a channels-last latent (A, A, A, C), returned channels last (D, H, W, n_phases)."""
    with torch.no_grad():
        out = net(torch.from_numpy(np.array(z)).permute(3, 0, 1, 2)[None])
    return out[0].permute(1, 2, 3, 0).numpy()


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    net = _random_generator(0, **TINY)
    path = tmp_path_factory.mktemp("torch") / "netG.pth"
    torch.save(net.state_dict(), path)
    out = import_generator(
        path,
        tmp_path_factory.mktemp("converted") / "ckpt",
        labels=(0, 128, 255),
        names=("pore", "active", "binder"),
        voxel_size=0.4,
    )
    return net, path, out


@pytest.mark.parametrize("latent_side", [1, 3])
def test_converted_generator_matches_pytorch(tiny_checkpoint, latent_side):
    net, _, workdir = tiny_checkpoint
    gen = load_generator(workdir)
    z = gen.latent(seed=latent_side, size=latent_side)
    expected = _torch_output(net, z)
    got = gen.probabilities(z)
    assert got.shape == expected.shape == (16 * (latent_side + 3),) * 3 + (3,)
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    assert 0.05 < expected.max(axis=-1).mean() < 0.999  # the comparison is not between saturated outputs
    np.testing.assert_array_equal(gen.labels(z), np.asarray([0, 128, 255], np.uint8)[expected.argmax(-1)])


def test_converted_metadata_and_config(tiny_checkpoint):
    _, _, workdir = tiny_checkpoint
    meta = checkpoint.read_metadata(workdir)
    config, phase_map = checkpoint.model_and_phases(meta)
    assert (config.n_phases, config.latent_channels, config.g_widths) == (3, 5, (16, 8, 8, 4))
    assert phase_map.labels == (0, 128, 255) and phase_map.names == ("pore", "active", "binder")
    assert phase_map.voxel_size == 0.4 and meta["imported_from"]["file"] == "netG.pth"


def test_dataparallel_prefix_and_paper_widths():
    net = _random_generator(1, n_phases=4, latent_channels=100)
    wrapped = {f"module.{k}": v for k, v in net.state_dict().items()}
    config, variables = generator_variables(wrapped)
    assert config.g_widths == (512, 256, 128, 64) and config.d_widths == (16, 32, 64, 128)
    assert (config.n_phases, config.latent_channels) == (4, 100)
    w = net.state_dict()["main.3.weight"].numpy()  # (C_in, C_out, kD, kH, kW)
    np.testing.assert_array_equal(variables["params"]["deconv1"]["kernel"], w.transpose(2, 3, 4, 0, 1))
    np.testing.assert_array_equal(
        variables["batch_stats"]["BatchNorm_3"]["var"], net.state_dict()["main.10.running_var"].numpy()
    )


def test_paper_width_output_matches_pytorch(tmp_path):
    net = _random_generator(2, weight_std=0.02, n_phases=3, latent_channels=100)
    workdir = import_generator(net.state_dict(), tmp_path / "paper")
    gen = load_generator(workdir)
    z = gen.latent(seed=0, size=1)
    expected = _torch_output(net, z)
    np.testing.assert_allclose(gen.probabilities(z), expected, atol=1e-5, rtol=0)
    assert expected.max(axis=-1).mean() < 0.999


def test_discriminator_state_dict_is_rejected_naming_the_key():
    d = torch_reference.Discriminator(3, (4, 8, 8, 8))
    with pytest.raises(PorejaxError, match=r"'main\.0\.weight' has shape \(4, 3, 4, 4, 4\)|'main\.1\.weight'"):
        generator_variables(d.state_dict())


def test_mismatching_shapes_and_extra_keys_are_named():
    sd = _random_generator(3, **TINY).state_dict()
    bad = dict(sd, **{"main.4.running_var": torch.ones(7)})
    with pytest.raises(PorejaxError, match=r"'main\.4\.running_var' has shape \(7,\)"):
        generator_variables(bad)
    with pytest.raises(PorejaxError, match=r"unexpected key 'main\.13\.bias'"):
        generator_variables(dict(sd, **{"main.13.bias": torch.zeros(3)}))
    with pytest.raises(PorejaxError, match=r"missing key 'main\.0\.weight'"):
        generator_variables({"weight": torch.zeros(3)})


def test_cli_import_then_generate(tiny_checkpoint, tmp_path, capsys):
    _, path, _ = tiny_checkpoint
    out = tmp_path / "imported"
    assert cli_main(["import-torch", "--state-dict", str(path), "--out", str(out), "--labels", "1,2,5"]) == 0
    assert checkpoint.model_and_phases(checkpoint.read_metadata(out))[1].labels == (1, 2, 5)
    assert cli_main(["generate", "--checkpoint", str(out), "--size", "48", "--out", str(tmp_path / "v.tif")]) == 0
    import tifffile

    volume = tifffile.imread(tmp_path / "v.tif")
    assert volume.shape == (48, 48, 48) and set(np.unique(volume)) <= {1, 2, 5}
    assert cli_main(["import-torch", "--state-dict", str(path), "--out", str(tmp_path / "x"), "--labels", "0,1"]) == 2
    assert "3 phases but 2 labels" in capsys.readouterr().err


def test_unreadable_file_gives_one_line_error(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a state dict")
    with pytest.raises(PorejaxError, match="cannot read"):
        load_state_dict(bad)
    torch.save(torch.nn.Linear(2, 2), tmp_path / "module.pth")  # a pickled module: refused by weights_only
    with pytest.raises(PorejaxError, match="cannot read .* state_dict"):
        load_state_dict(tmp_path / "module.pth")
    torch.save([torch.zeros(2)], tmp_path / "list.pth")
    with pytest.raises(PorejaxError, match="does not hold a state_dict"):
        load_state_dict(tmp_path / "list.pth")
