"""Imports run one way (cli -> API -> kernels): checked on the source with ast."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "numbaconc"


def _imports(path: Path) -> set[str]:
    """Package modules a file imports (relative imports resolved), at any depth."""
    tree = ast.parse(path.read_text())
    parts = ("numbaconc",) + path.relative_to(PACKAGE).with_suffix("").parts
    base = parts[:-1] if path.name != "__init__.py" else parts[:-1]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base[:len(base) - node.level + 1]
                module = ".".join(anchor + ((node.module,) if node.module else ()))
                names = [f"{module}.{alias.name}" for alias in node.names] if not node.module else []
                found.update([module] + names)
            elif node.module:
                found.add(node.module)
    return {name for name in found if name.split(".")[0] in ("numbaconc", "numbaconc_cli")}


def test_kernels_import_nothing_of_the_package_but_their_jit_settings():
    for path in (PACKAGE / "kernels").glob("*.py"):
        outside = {m for m in _imports(path) if not m.startswith("numbaconc.kernels")}
        assert not outside, (path.name, outside)


def test_the_package_never_imports_the_cli():
    for path in PACKAGE.rglob("*.py"):
        if path.name == "__main__.py":  # ``python -m numbaconc`` is the CLI's entry point
            continue
        assert not any(name.startswith("numbaconc_cli") for name in _imports(path)), path.name


def test_the_foundations_import_no_estimator():
    low = {"errors", "validation", "budget", "stages", "outputs", "integrity"}
    for name in low:
        imported = {m.split(".")[1] for m in _imports(PACKAGE / f"{name}.py") if m.count(".") >= 1}
        assert imported <= low, (name, imported - low)


ESTIMATORS = {"boxes", "boxes_coverage", "balls", "halfspace", "kmeans", "neighbours",
              "concentration", "frontier", "optimal_loss", "families", "api", "reproduction",
              "report", "lu_reproduce"}


def test_regions_and_their_geometry_import_no_estimator():
    assert all((PACKAGE / f"{name}.py").is_file() for name in ESTIMATORS)  # a rename voids nothing
    for name in ("regions", "coverage"):
        imported = {m.split(".")[1] for m in _imports(PACKAGE / f"{name}.py") if m.count(".") >= 1}
        assert not imported & ESTIMATORS, (name, imported & ESTIMATORS)
