"""Structure checks on the source of ``nerfkit/`` (standard-library ``ast`` only: no JAX, no imports of nerfkit).

1. No import cycle among nerfkit's modules. Every ``import`` / ``from ... import`` statement counts, also the
   ones inside functions (a lazy import is still a dependency) and under ``if TYPE_CHECKING:``.
2. No function (``def`` / ``async def``, methods and nested functions included) longer than
   ``MAX_FUNCTION_LINES``, from the ``def`` line to its last line, except the data loaders' format tables
   listed in ``LONG_FUNCTION_ALLOW_LIST``.
3. At most ``MAX_SAMPLER_STRING_CHECKS`` place in the package compares a sampler to a string
   (``cfg.sampler == "occupancy"``, ``sampler != "..."``, ``sampler in ("...", ...)``, ``match sampler:
   case "...":``): the sampler is chosen once, everything else asks the object it got.

Each test lists every offending place (file:line) in its failure message.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "nerfkit"
PACKAGE_DIR = REPO / PACKAGE

MAX_FUNCTION_LINES = 60
# Functions allowed over MAX_FUNCTION_LINES: only the data loaders' format tables (files under nerfkit/data/),
# keyed "path relative to the repository::qualified name" with the most lines each may have, e.g.
# {"nerfkit/data/colmap.py::CAMERA_MODELS_table": 80}. Keep it small; stale entries fail the test below.
LONG_FUNCTION_ALLOW_LIST: dict[str, int] = {}
MAX_SAMPLER_STRING_CHECKS = 1


# --------------------------------------------------------------------------------------------- the package
@dataclass(frozen=True)
class Module:
    name: str  # dotted: nerfkit.data.blender; a package's __init__.py is the package itself (nerfkit.data)
    path: Path
    is_package: bool

    @property
    def rel(self) -> str:
        return self.path.relative_to(REPO).as_posix()

    def tree(self) -> ast.Module:
        return ast.parse(self.path.read_text(encoding="utf-8"), filename=str(self.path))


def package_modules() -> dict[str, Module]:
    """Every module of the package on disk (namespace package or not, namespace subpackages included)."""
    mods = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        if "__pycache__" in parts or not all(p.isidentifier() for p in parts):
            continue
        is_package = parts[-1] == "__init__"
        name = ".".join(parts[:-1] if is_package else parts)
        mods[name] = Module(name, path, is_package)
    return mods


def test_package_found():
    mods = package_modules()
    assert f"{PACKAGE}.integrator" in mods, f"no {PACKAGE} modules found under {PACKAGE_DIR}"


# ----------------------------------------------------------------------------------------- 1. import cycles
@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    where: str  # file:line


def _resolve_from(mod: Module, node: ast.ImportFrom) -> str | None:
    """The absolute module a ``from X import ...`` reads X from (relative imports resolved)."""
    if node.level == 0:
        return node.module
    package = mod.name.split(".") if mod.is_package else mod.name.split(".")[:-1]
    if node.level - 1 > len(package) - 1:
        return None  # beyond the top-level package
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_edges(mods: dict[str, Module]) -> list[Edge]:
    """One edge per import statement of a nerfkit module by another one (self-imports ignored).

    ``import a.b`` depends on module ``a.b``; ``from a import x`` on module ``a.x`` when that is a module,
    else on ``a`` itself (when ``a`` is a module, e.g. a package with an ``__init__.py``).
    """
    edges = set()
    for mod in mods.values():
        for node in ast.walk(mod.tree()):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve_from(mod, node)
                if base is None:
                    continue
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    targets.append(sub if sub in mods else base)
            for target in targets:
                if target in mods and target != mod.name:
                    edges.add(Edge(mod.name, target, f"{mod.rel}:{node.lineno}"))
    return sorted(edges, key=lambda e: (e.source, e.target, e.where))


def strongly_connected_components(nodes, succ: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative (no recursion limit); returns every component, singletons included."""
    index, low, on_stack, stack, out, counter = {}, {}, set(), [], [], 0
    for root in nodes:
        if root in index:
            continue
        work = [(root, iter(sorted(succ.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            for w in children:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(succ.get(w, ())))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    out.append(sorted(comp))
    return out


def import_cycles(mods: dict[str, Module]) -> tuple[list[list[str]], list[Edge]]:
    """The components of the import graph with more than one module, and the edges inside them."""
    edges = import_edges(mods)
    succ: dict[str, set[str]] = {m: set() for m in mods}
    for e in edges:
        succ[e.source].add(e.target)
    cycles = sorted(c for c in strongly_connected_components(sorted(mods), succ) if len(c) > 1)
    members = {m: i for i, c in enumerate(cycles) for m in c}
    inside = [e for e in edges if e.source in members and members[e.source] == members.get(e.target)]
    return cycles, inside


def test_no_import_cycles():
    cycles, inside = import_cycles(package_modules())
    if cycles:
        lines = [f"{len(cycles)} import cycle(s) among {PACKAGE} modules (imports inside functions count too):"]
        for comp in cycles:
            lines.append(f"  cycle: {' <-> '.join(comp)}")
            for e in inside:
                if e.source in comp:
                    lines.append(f"    {e.source} imports {e.target}  ({e.where})")
        raise AssertionError("\n".join(lines))


def test_cycle_detection_on_a_known_graph():
    """The detector itself: a 3-cycle, a 2-cycle and a chain leading into a cycle."""
    succ = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"e"}, "e": {"d", "a"}, "f": {"d"}, "g": set()}
    comps = sorted(c for c in strongly_connected_components(sorted(succ), succ) if len(c) > 1)
    assert comps == [["a", "b", "c"], ["d", "e"]]


# --------------------------------------------------------------------------------------- 2. long functions
@dataclass(frozen=True)
class Function:
    key: str  # "nerfkit/trainer.py::Trainer.fit"
    where: str  # "nerfkit/trainer.py:231"
    lines: int


def functions(mod: Module) -> list[Function]:
    """Every def / async def of a module with its qualified name and length (def line to last line)."""
    out = []

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                qual = f"{prefix}{child.name}"
                n = child.end_lineno - child.lineno + 1
                out.append(Function(f"{mod.rel}::{qual}", f"{mod.rel}:{child.lineno}", n))
                visit(child, qual + ".")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            else:
                visit(child, prefix)  # defs inside if / try / with / for bodies

    visit(mod.tree(), "")
    return out


def all_functions() -> list[Function]:
    return [f for mod in package_modules().values() for f in functions(mod)]


def test_no_long_functions():
    long = [f for f in all_functions() if f.lines > LONG_FUNCTION_ALLOW_LIST.get(f.key, MAX_FUNCTION_LINES)]
    if long:
        lines = [f"{len(long)} function(s) longer than {MAX_FUNCTION_LINES} lines (def line to last line):"]
        for f in sorted(long, key=lambda f: -f.lines):
            limit = LONG_FUNCTION_ALLOW_LIST.get(f.key)
            extra = f", allow-listed up to {limit}" if limit else ""
            lines.append(f"  {f.where} {f.key.split('::')[1]}: {f.lines} lines{extra}")
        raise AssertionError("\n".join(lines))


def test_long_function_allow_list_is_current():
    """Allow-list entries are data-loader functions that exist and still need their exemption."""
    by_key = {f.key: f for f in all_functions()}
    bad = []
    for key, limit in LONG_FUNCTION_ALLOW_LIST.items():
        if not key.startswith(f"{PACKAGE}/data/"):
            bad.append(f"  {key}: only the data loaders' format tables (under {PACKAGE}/data/) may be listed")
        elif key not in by_key:
            bad.append(f"  {key}: no such function any more")
        elif by_key[key].lines <= MAX_FUNCTION_LINES:
            bad.append(f"  {key}: now {by_key[key].lines} lines, within the limit: remove the entry")
    assert not bad, "stale or invalid LONG_FUNCTION_ALLOW_LIST entries:\n" + "\n".join(bad)


# ------------------------------------------------------------------------------------ 3. sampler dispatch
def _is_sampler(node) -> bool:
    return (isinstance(node, ast.Name) and node.id == "sampler") or (
        isinstance(node, ast.Attribute) and node.attr == "sampler")


def _is_str(node) -> bool:
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return bool(node.elts) and all(_is_str(e) for e in node.elts)
    return isinstance(node, ast.Constant) and isinstance(node.value, str)


def _is_str_pattern(pattern) -> bool:
    if isinstance(pattern, ast.MatchValue):
        return _is_str(pattern.value)
    if isinstance(pattern, ast.MatchOr):
        return any(_is_str_pattern(p) for p in pattern.patterns)
    return False


def sampler_string_checks(tree: ast.AST) -> list[int]:
    """Line numbers of comparisons of something named ``sampler`` to string constants."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            for op, a, b in zip(node.ops, operands, operands[1:]):
                if isinstance(op, (ast.Eq, ast.NotEq)) and (
                        (_is_sampler(a) and _is_str(b)) or (_is_str(a) and _is_sampler(b))):
                    found.append(node.lineno)
                elif isinstance(op, (ast.In, ast.NotIn)) and _is_sampler(a) and _is_str(b):
                    found.append(node.lineno)
        elif isinstance(node, ast.Match) and _is_sampler(node.subject):
            found.extend(case.pattern.lineno for case in node.cases if _is_str_pattern(case.pattern))
    return sorted(found)


def test_sampler_chosen_in_one_place():
    checks = [f"{mod.rel}:{line}" for mod in package_modules().values() for line in sampler_string_checks(mod.tree())]
    if len(checks) > MAX_SAMPLER_STRING_CHECKS:
        raise AssertionError(
            f"{len(checks)} places compare a sampler to a string (at most {MAX_SAMPLER_STRING_CHECKS} allowed: "
            "choose the sampler once, then call the object):\n" + "\n".join(f"  {c}" for c in checks))


def test_sampler_check_detection():
    src = '''
if cfg.sampler == "occupancy": pass
if "grid" != self.model.sampler: pass
if sampler in ("a", "b"): pass
if samplers == "x" or cfg.sampler == cfg.other or cfg.sampler is None: pass
match cfg.sampler:
    case "hierarchical" | "uniform":
        pass
    case _:
        pass
'''
    assert sampler_string_checks(ast.parse(src)) == [2, 3, 4, 7]
