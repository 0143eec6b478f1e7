"""Presets: one table of networks and recipes, which the command line's choices and help come from."""

import pytest

from porejax import cli, presets
from porejax.errors import PorejaxError


@pytest.mark.parametrize("name", presets.PRESETS)
def test_every_preset_builds_a_network_and_a_recipe_that_trains_on_its_crops(name):
    model, recipe = presets.model(name, 4), presets.recipe(name)
    assert model.n_phases == 4 and recipe.steps >= 1
    # the slice presets (2D images; cpu-smooth judged on slices), and only they, train slice discriminators
    assert (recipe.discriminator != "volume") == name.startswith("slice")
    assert presets.model(name, 4, crop=model.crop_size) == model


def test_overrides_replace_the_recipe_s_values_and_none_keeps_them():
    assert presets.recipe("tiny", steps=7, lr=None).steps == 7
    assert presets.recipe("tiny", lr=None).lr == 2e-4
    assert presets.model("cpu", 3, precision="bfloat16").compute_dtype == "bfloat16"


def test_unknown_presets_and_mismatched_crops_are_one_line_errors():
    with pytest.raises(PorejaxError, match="unknown preset 'huge': choose one of paper, cpu"):
        presets.recipe("huge")
    with pytest.raises(PorejaxError, match=r"--crop 64 does not match the tiny preset.*tiny 32"):
        presets.model("tiny", 3, crop=64)


def test_the_train_command_offers_and_describes_every_preset(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for name, preset in presets.PRESETS.items():
        assert f"{name}: {preset.about}" in text


def test_training_options_override_the_preset_s_recipe():
    import argparse

    p = argparse.ArgumentParser()
    cli.add_training_arguments(p)
    model, config = cli.training_configs(p.parse_args(["--r1", "2", "--lr", "3e-5"]), "cpu-smooth", 3)
    assert (config.r1_weight, config.lr, config.loss, model.head_width) == (2.0, 3e-5, "bce", 8)
    assert cli.training_configs(p.parse_args([]), "cpu", 3)[1].r1_weight == 0.0
