"""The README's glossary and tutorials table: the entries are there and their numbers match the code."""

import re
from pathlib import Path

from kangaroo_lab import load_adapter

README = (Path(__file__).parent.parent / "README.md").read_text()


def section(title: str) -> str:
    return README.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_glossary_names_the_terms_the_notebooks_use():
    glossary = section("Glossary")
    for term in ("CTAR(w)", "tokens per round", "E[Σ min(p, q)]", "exit ratio", "fixed rows", "CPU threads"):
        assert f"**{term}" in glossary, term
    assert README.index("## Tutorials") < README.index("## Glossary") < README.index("## Results")


def test_glossary_numbers_match_the_model(smol):
    glossary = section("Glossary")
    n, l = re.search(r"SmolLM2 has `N` = (\d+) and the shipped default exits at `l` = (\d+)", glossary).groups()
    assert (int(n), int(l)) == (smol.config.n_layers, load_adapter(smol).exit_layer)


def test_the_quickstart_row_does_not_promise_speed_on_every_machine():
    row = next(line for line in section("Tutorials").splitlines() if line.startswith("| `00_quickstart`"))
    assert "faster" not in row and "slower than AR" in row
