"""The dependency rules of docs/architecture.md, read from the modules' import statements."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "porejax"


def _imports(path: Path) -> set[str]:
    """Every module name an import statement in `path` names (top level and inside functions)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def _files(name: str) -> list[Path]:
    target = PACKAGE / name
    return sorted(target.rglob("*.py")) if target.is_dir() else [target.with_suffix(".py")]


def _porejax_imports(name: str) -> set[str]:
    return {i for path in _files(name) for i in _imports(path) if i.startswith("porejax")}


@pytest.mark.parametrize(
    "module, allowed",
    [
        ("axes", set()),
        ("errors", set()),
        ("programs", set()),
        ("store", {"porejax.errors"}),
        ("volume", {"porejax.errors", "porejax.axes", "porejax.store"}),
    ],
)
def test_the_ground_floor_imports_only_the_ground_floor(module, allowed):
    outside = [i for i in _porejax_imports(module) if not any(i == a or i.startswith(a + ".") for a in allowed)]
    assert outside == [], f"{module} imports {outside}"


@pytest.mark.parametrize(
    "module, forbidden",
    [
        (
            "metrics",
            (
                "porejax.nn",
                "porejax.models",
                "porejax.train",
                "porejax.generate",
                "porejax.checkpoint",
                "porejax.compare",
            ),
        ),
        ("generate", ("porejax.train", "porejax.compare", "porejax.cli")),
        ("train", ("porejax.compare", "porejax.cli")),
        ("latents", ("porejax.train", "porejax.generate", "porejax.compare", "porejax.cli")),
        ("standing", ("porejax.train", "porejax.generate", "porejax.compare", "porejax.cli")),
        ("figures", ("porejax.metrics", "porejax.models", "porejax.generate", "porejax.train", "porejax.compare")),
    ],
)
def test_modules_do_not_import_what_the_rules_forbid(module, forbidden):
    found = sorted(i for i in _porejax_imports(module) if i.startswith(forbidden))
    assert found == [], f"{module} imports {found}"


def test_torch_and_pyplot_stay_out_of_the_library():
    for path in PACKAGE.rglob("*.py"):
        names = _imports(path)
        if "interop" not in path.parts:
            assert not any(n == "torch" or n.startswith("torch.") for n in names), path
        assert not any(n.startswith("matplotlib.pyplot") for n in names), path
        assert "matplotlib.use" not in path.read_text(), path


def test_the_preset_table_imports_only_errors_at_module_level():
    """The command line builds its --preset choices and help from porejax.presets without importing JAX."""
    tree = ast.parse((PACKAGE / "presets.py").read_text())
    top = {n.module for n in tree.body if isinstance(n, ast.ImportFrom) and n.module} | {
        a.name for n in tree.body if isinstance(n, ast.Import) for a in n.names
    }
    assert {m for m in top if m.startswith("porejax")} == {"porejax.errors"}
    assert not any(m.split(".")[0] in ("jax", "flax", "numpy") for m in top), top
