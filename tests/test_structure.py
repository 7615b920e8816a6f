"""The package's house rules, checked from the source: floors that only import downward (imports
inside functions included), no import cycle, no module past ~600 lines."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "kangaroo_lab"

# From the ground up (DESIGN.md, "Layout"): a module imports only from floors below its own, or from
# its own floor without a cycle. A package (bench/, plots/, cli/) is one floor for all its modules.
FLOORS = [
    ["engine"],
    ["tree", "lookup", "options"],
    ["models"],
    ["adapter", "accept", "proposers"],
    ["rounds"],
    ["graphs"],
    ["decoding"],
    ["metrics", "questions", "templates"],
    ["corpora", "mixing", "distill", "training"],
    ["bench"],
    ["plots"],
    ["render"],
    ["costs", "exactness", "explore"],
    ["widgets"],
    ["cli"],
    ["__init__", "__main__"],
]
FLOOR = {name: i for i, names in enumerate(FLOORS) for name in names}
MAX_LINES = 600


def modules() -> dict[str, Path]:
    """'rounds' -> its file; 'bench.run' -> bench/run.py (the top-level part names its floor)."""
    return {".".join(p.relative_to(PACKAGE).with_suffix("").parts): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(name: str, path: Path) -> set[str]:
    """The package modules `name` imports, anywhere in the file (functions included), resolved."""
    package = name.split(".")[:-1]  # 'bench.run' and 'bench.__init__' live in bench/; 'rounds' at the top
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0:
                if node.module and node.module.startswith("kangaroo_lab."):
                    found.add(node.module.removeprefix("kangaroo_lab."))
                continue
            base = package[: len(package) - (node.level - 1)]
            if node.module is None:  # `from . import tree as T`
                found |= {".".join([*base, a.name]) for a in node.names}
            else:
                found.add(".".join([*base, *node.module.split(".")]))
        elif isinstance(node, ast.Import):
            found |= {a.name.removeprefix("kangaroo_lab.") for a in node.names if a.name.startswith("kangaroo_lab.")}
    return {t for t in found if t and t != name}


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    resolved = {}
    for name, path in mods.items():
        targets = set()
        for t in imports(name, path):
            while t and t not in known:  # `from .bench import x` where x is a name, not a module
                t = t.rpartition(".")[0]
            if t and t != name:
                targets.add(t)
        resolved[name] = targets
    return resolved


def top(name: str) -> str:
    return name.split(".")[0]


def test_every_module_has_a_floor():
    assert not {top(m) for m in modules()} - set(FLOOR), "add the new module to FLOORS (DESIGN.md's layout)"


def test_no_module_imports_from_a_floor_above_it():
    upward = [
        f"{a} -> {b}"
        for a, targets in graph().items()
        for b in targets
        if FLOOR[top(b)] > FLOOR[top(a)] and top(a) not in ("__init__", "__main__")
    ]
    assert not upward, upward


def test_no_import_cycle():
    g = graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(node, stack):
        state[node] = 1
        for nxt in g.get(node, ()):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(stack[stack.index(nxt) :] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for node in g:
        if node not in state:
            visit(node, [node])
    assert not cycles, cycles


@pytest.mark.parametrize("name", sorted(modules()))
def test_modules_stay_short(name):
    lines = len(modules()[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{name} has {lines} lines: split it (STYLE.md: one module, one job)"
