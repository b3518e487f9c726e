"""The package's layering, as the README states it: nothing imports from a higher layer.

    env, data, metrics  ->  models  ->  optim, train, compiled, fastai_glue, distributed
    ->  recommender  ->  analysis (interpret, coldstart, feedback_loop, compare, retrieval)
    ->  plots, widgets

Imports inside functions count too (a lazy import is still a dependency).
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "cfcourse"
# (prefix, layer): the longest matching prefix decides.
LAYERS = [
    ("cfcourse.env", 0), ("cfcourse.data", 1), ("cfcourse.metrics", 1),
    ("cfcourse.models", 2),
    ("cfcourse.optim", 3), ("cfcourse.train", 3), ("cfcourse.compiled", 3),
    ("cfcourse.fastai_glue", 3), ("cfcourse.distributed", 3),
    ("cfcourse.recommender", 4),
    ("cfcourse.interpret", 5), ("cfcourse.coldstart", 5), ("cfcourse.feedback_loop", 5),
    ("cfcourse.compare", 5), ("cfcourse.retrieval", 5),
    ("cfcourse.plots", 6), ("cfcourse.widgets", 6),
]


def layer(module: str) -> int | None:
    matches = [(len(p), n) for p, n in LAYERS if module == p or module.startswith(p + ".")]
    return max(matches)[1] if matches else None


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if name != "cfcourse":  # the package's lazy front door may name anything
            found[name] = path
    return found


def imported(path: Path, module: str) -> set[str]:
    """Every cfcourse module ``path`` imports, at any depth of its code."""
    names = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            names.add(base)
            # `from cfcourse import env` imports the module cfcourse.env
            names |= {f"{base}.{a.name}" for a in node.names if layer(f"{base}.{a.name}")
                      is not None}
    return {n for n in names if n.startswith("cfcourse.")}


def test_every_module_has_a_layer():
    missing = [name for name in modules() if layer(name) is None]
    assert not missing, f"give these modules a layer in tests/test_layering.py: {missing}"


@pytest.mark.parametrize("module", sorted(modules()))
def test_no_module_imports_from_a_higher_layer(module):
    own = layer(module)
    upward = {dep: layer(dep) for dep in imported(modules()[module], module)
              if layer(dep) is not None and layer(dep) > own}
    assert not upward, f"{module} (layer {own}) imports from higher layers: {upward}"


def test_the_checker_sees_an_upward_import_inside_a_function(tmp_path):
    """A model that lazily imports the estimator is caught (the rule can fail)."""
    fake = tmp_path / "fake.py"
    fake.write_text("def f():\n    from cfcourse import recommender\n"
                    "    from ..interpret import bias_table\n")
    deps = imported(fake, "cfcourse.models.fake")
    assert {"cfcourse.recommender", "cfcourse.interpret"} <= deps
    assert all(layer(d) > layer("cfcourse.models.fake") for d in deps)
