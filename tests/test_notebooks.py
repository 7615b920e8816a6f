"""The notebooks as files: clean in git (no outputs), numbered, and opening with the same first cell.

Running them is `make test`'s second step: `KANGAROO_LAB_SMOKE=1 pytest --nbmake notebooks`.
To strip outputs before committing: `jupyter nbconvert --clear-output --inplace notebooks/*.ipynb`.
"""

import re
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))
NAME = re.compile(r"^\d\d_[a-z0-9_]+\.ipynb$")
STRIP = "strip it: jupyter nbconvert --clear-output --inplace"


def test_the_tutorials_are_there_and_numbered():
    names = [p.name for p in NOTEBOOKS]
    assert all(NAME.match(n) for n in names), names
    assert [n[:2] for n in names] == [f"{i:02d}" for i in range(len(names))] and len(names) >= 7


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_clean(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert not cell.outputs, f"{path.name}, cell {i} has stored outputs; {STRIP} {path}"
            assert cell.execution_count is None, f"{path.name}, cell {i} has an execution count; {STRIP} {path}"


def test_notebooks_open_with_the_same_first_cell():
    firsts = {p.name: nbformat.read(p, as_version=4).cells[0] for p in NOTEBOOKS}
    sources = {cell.source for cell in firsts.values()}
    assert len(sources) == 1, "the first cells differ: " + ", ".join(firsts)
    first = next(iter(firsts.values()))
    assert first.cell_type == "code"
    for name in ("KANGAROO_LAB_SMOKE", "KANGAROO_LAB_DEVICE", "KANGAROO_LAB_DATA", "KANGAROO_LAB_OUT", "SEED"):
        assert name in first.source
