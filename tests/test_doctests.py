"""Run every ``>>>`` example in the docstrings of ``nerfkit/`` (one test per module that has examples).

Modules are found on disk (``nerfkit/**/*.py``, so a namespace package and namespace subpackages work as
well as packages with an ``__init__.py``) and parsed with ``ast`` at collection time; a module is imported
only by its own test, and only when its docstrings contain examples, so modules with optional heavy
dependencies and no examples are never imported. Examples run with ``doctest.DocTestFinder`` /
``DocTestRunner`` in a copy of the module's globals (``jnp``, ``np`` and the module's own names are in
scope), with ``ELLIPSIS`` and ``NORMALIZE_WHITESPACE``. A failing example fails the test with doctest's
report; an example that doctest cannot reach (e.g. in a nested function's docstring) fails it too.

Run only these: ``python -m pytest -q tests/test_doctests.py``.
"""

from __future__ import annotations

import ast
import doctest
import importlib
import io
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "nerfkit"
PACKAGE_DIR = REPO / PACKAGE
OPTIONFLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE

# Modules of pure numerics: every public top-level function carries a runnable example.
NUMERICS_MODULES = ("nerfkit.encodings", "nerfkit.cameras", "nerfkit.sampling", "nerfkit.mip", "nerfkit.metrics",
                    "nerfkit.integrator", "nerfkit.occupancy")


def package_modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package on disk (``__main__`` left out)."""
    mods = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        if "__pycache__" in parts or parts[-1] == "__main__" or not all(p.isidentifier() for p in parts):
            continue
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return mods


def docstring_examples(path: Path) -> dict[str, int]:
    """Qualified name (relative to the module, '' for the module) -> number of examples in its docstring."""
    parser = doctest.DocTestParser()
    out = {}

    def add(node, qual):
        doc = ast.get_docstring(node, clean=False)
        n = len(parser.get_examples(doc)) if doc else 0
        if n:
            out[qual] = n

    def visit(node, prefix):  # classes and functions at any depth (also inside if / try / with bodies)
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                add(child, prefix + child.name)
                visit(child, f"{prefix}{child.name}.")
            else:
                visit(child, prefix)

    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    add(tree, "")
    visit(tree, "")
    return out


MODULES_WITH_EXAMPLES = sorted(name for name, path in package_modules().items() if docstring_examples(path))


def test_modules_with_examples_found():
    """The walk sees the package: the modules below carry examples today."""
    missing = {"nerfkit.integrator", *NUMERICS_MODULES} - set(MODULES_WITH_EXAMPLES)
    assert not missing, f"no docstring examples found in {sorted(missing)} (looked in {PACKAGE_DIR})"


@pytest.mark.parametrize("module_name", MODULES_WITH_EXAMPLES)
def test_doctests(module_name):
    path = package_modules()[module_name]
    module = importlib.import_module(module_name)
    where = Path(module.__file__).resolve()
    assert where == path.resolve(), (
        f"{module_name} was imported from {where}, not from this checkout's {path}: put the repository first "
        f"on sys.path (PYTHONPATH={REPO})")

    tests = [t for t in doctest.DocTestFinder(exclude_empty=True).find(module, module_name) if t.examples]
    runner = doctest.DocTestRunner(optionflags=OPTIONFLAGS)
    report = io.StringIO()
    for test in sorted(tests, key=lambda t: t.name):
        runner.run(test, out=report.write)
    problems = []
    if runner.failures:
        problems.append(f"{runner.failures} of {runner.tries} doctest examples failed in {module_name}:\n"
                        f"{report.getvalue()}")
    # Examples in a docstring that doctest never looks at (a nested function's, or one hidden by a
    # decorator) would otherwise silently never run.
    expected = {f"{module_name}.{q}" if q else module_name: n for q, n in docstring_examples(path).items()}
    found = {t.name: len(t.examples) for t in tests}
    unreached = sorted(name for name, n in expected.items() if found.get(name, 0) < n)
    if unreached:
        problems.append(f"docstring examples in {module_name} that doctest never runs (not reachable from the "
                        f"module's namespace: a nested function, or a decorator that drops __doc__): {unreached}")
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)
    assert runner.tries > 0, f"no examples ran in {module_name}"


@pytest.mark.parametrize("module_name", NUMERICS_MODULES)
def test_public_numerics_have_examples(module_name):
    """Every public top-level function of the pure-numerics modules has a runnable example."""
    path = package_modules()[module_name]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    with_examples = docstring_examples(path)
    public = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
              and not n.name.startswith("_")]
    missing = [name for name in public if name not in with_examples]
    assert not missing, f"public functions of {module_name} without a '>>>' example in their docstring: {missing}"
