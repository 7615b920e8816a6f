"""The command line: JSON output, the coloured renderer, the demo, error messages and --help.

Everything runs on `tiny-random` with a few new tokens, so the file takes seconds on a CPU."""

import json
import re

import pytest

from kangaroo_lab import GenerationResult, load_model, new_adapter
from kangaroo_lab.cli import (
    ACCEPTED,
    DEMO_METHODS,
    LOOKUP,
    REJECTED,
    main,
    render,
    token_kinds,
    token_pieces,
    use_colour,
)
from kangaroo_lab.decoding import HEADLINE_METHOD
from kangaroo_lab.decoding import Round

TINY = ["--model", "tiny-random"]


def run_json(capsys, *args):
    assert main(["generate", *TINY, "--max-new-tokens", "12", "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)


# ------------------------------------------------------------------------------------ generate
def test_generate_json_both_methods_agree(capsys):
    ar = run_json(capsys, "--prompt", "hi", "--method", "ar")
    kg = run_json(capsys, "--prompt", "hi", "--method", "kangaroo")
    assert ar["method"] == "ar" and ar["adapter"] is None
    assert kg["method"] == "kangaroo" and kg["adapter"]["source"] == "untrained"
    assert kg["text"] == ar["text"] and kg["token_ids"] == ar["token_ids"]  # greedy is lossless
    assert len(kg["token_ids"]) == kg["options"]["max_new_tokens"] == 12
    for key in (
        "model",
        "options",
        "accept_lengths",
        "mean_accepted",
        "tokens_per_second",
        "seconds",
        "rounds",
        "draft_confidences",
        "draft_accepted",
        "stop_reason",
    ):
        assert key in kg


@pytest.mark.parametrize("method", ["pld", "kangaroo-tree", "kangaroo+lookup"])
def test_generate_json_trees_and_lookup(capsys, method):
    ar = run_json(capsys, "--prompt", "hi hi hi hi", "--method", "ar")
    rec = run_json(
        capsys,
        "--prompt",
        "hi hi hi hi",
        "--method",
        method,
        "--lookup-tokens",
        "4",
        "--node-budget",
        "12",
        "--max-draft",
        "2",
        "--top-k",
        "3",
    )
    assert rec["token_ids"] == ar["token_ids"] and rec["syncs_per_round"] == 1.0
    assert (rec["adapter"] is None) == (method == "pld")
    assert rec["options"]["lookup_tokens"] == 4 and rec["options"]["node_budget"] == 12
    assert all(c is None or 0 <= c <= 1 for c in rec["draft_confidences"])  # lookup tokens have no confidence: null


def test_generate_warns_about_untrained_adapter_on_stderr(capsys):
    run_json(capsys, "--prompt", "hi")  # reads stdout only
    assert main(["generate", *TINY, "--prompt", "hi", "--max-new-tokens", "4"]) == 0
    out, err = capsys.readouterr()
    assert "UNTRAINED" in err and "UNTRAINED" not in out
    assert "\x1b[" not in out  # not a terminal: no colour
    assert "tokens/s" in out and "mean accepted" in out and "rounds" in out


def test_generate_with_adapter_folder(capsys, tmp_path):
    new_adapter(load_model("tiny-random"), exit_layer=1).save(tmp_path)
    rec = run_json(capsys, "--prompt", "hi", "--adapter", str(tmp_path))
    assert rec["adapter"]["source"] == "path" and rec["adapter"]["exit_layer"] == 1


# ------------------------------------------------------------------------------------ renderer
@pytest.fixture(scope="module")
def tok():
    return load_model("tiny-random").tokenizer


def decode_with(tok):
    return lambda ids: tok.decode(list(ids), skip_special_tokens=True)


def hand_made_result(tok) -> GenerationResult:
    """'héllo wörld' (13 bytes = 13 tokens) from four rounds; é and ö are split across rounds, and the
    output stops inside the last round."""
    ids = tok("héllo wörld", add_special_tokens=False).input_ids
    assert len(ids) == 13
    rej = tok("xyz", add_special_tokens=False).input_ids
    trace = [
        Round([ids[1], rej[0]], [0.9, 0.7], 1, ids[2]),  # é: first byte an accepted draft, second the target's
        Round(ids[3:6], [0.9] * 3, 3, ids[6]),  # all accepted + bonus
        Round(rej[1:], [0.8, 0.7], 0, ids[7]),  # both rejected
        Round(ids[8:11], [0.9] * 3, 3, ids[11]),
        Round([ids[12], rej[0]], [0.9, 0.9], 2, ids[0]),  # output stops after ids[12]
    ]
    return GenerationResult(
        method="kangaroo",
        prompt_ids=[0],
        token_ids=ids,
        text=tok.decode(ids),
        accept_lengths=[2, 4, 1, 4, 1],
        draft_confidences=[],
        draft_accepted=[],
        draft_positions=[],
        trace=trace,
        seconds=1.0,
        stop_reason="eos",
    )


def test_token_kinds_follow_the_trace(tok):
    res = hand_made_result(tok)
    kinds, rejected = token_kinds(res)
    assert len(kinds) == len(res.token_ids)
    assert kinds[:4] == ["target", "accepted", "target", "accepted"]
    assert kinds[11:] == ["target", "accepted"]
    assert sorted(rejected) == [2, 7] and len(rejected[7]) == 2


def test_token_kinds_of_a_tree_round_mark_lookup_tokens(tok):
    """A tree round: the accepted path (a lookup token, then an adapter draft below it) is coloured
    by source; a tree's other branches are not shown as rejected."""
    ids = tok("abcd", add_special_tokens=False).input_ids
    rnd = Round(
        [ids[1], 99, ids[2], 98],
        [float("nan"), 0.5, 0.9, 0.4],
        2,
        ids[3],
        parents=[-1, -1, 0, 1],
        path=[0, 2],
        sources=["lookup", "adapter", "adapter", "adapter"],
    )
    res = GenerationResult("kangaroo+lookup", [0], ids, "abcd", [3], [], [], [], [rnd], 1.0, "length")
    kinds, rejected = token_kinds(res)
    assert kinds == ["target", "lookup", "accepted", "target"] and rejected == {}
    coloured = render(res, decode_with(tok), colour=True)
    assert LOOKUP in coloured and REJECTED not in coloured


def test_token_pieces_keep_multibyte_characters(tok):
    ids = tok("é", add_special_tokens=False).input_ids
    assert token_pieces(ids, decode_with(tok)) == ["", "é"]


def test_render_plain_is_the_decoded_text(tok):
    res = hand_made_result(tok)
    assert render(res, decode_with(tok), colour=False) == "héllo wörld"


def test_render_colour_marks_accepted_and_rejected_drafts(tok):
    coloured = render(hand_made_result(tok), decode_with(tok), colour=True)
    assert ACCEPTED in coloured and REJECTED in coloured
    assert f"{REJECTED}yz" in coloured  # the two drafts rejected together
    without_rejected = re.sub(re.escape(REJECTED) + r".*?\x1b\[0m", "", coloured)
    assert re.sub(r"\x1b\[[0-9;]*m", "", without_rejected) == "héllo wörld"


def test_render_autoregressive_result(tok):
    ids = tok("plain", add_special_tokens=False).input_ids
    res = GenerationResult("ar", [0], ids, "plain", [1] * 4, [], [], [], [], 1.0, "length")
    assert render(res, decode_with(tok), colour=True) == "plain"


def test_no_colour_off_a_terminal_or_with_no_color(monkeypatch):
    class Terminal:
        def isatty(self):
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    assert use_colour(Terminal())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not use_colour(Terminal())


# ------------------------------------------------------------------------------------ demo
def test_demo_prints_table_for_every_demo_method(capsys):
    assert main(["demo", *TINY, "--max-new-tokens", "8"]) == 0
    out = capsys.readouterr().out
    assert "identical to AR" in out and "UNTRAINED" in out
    rows = [line.split() for line in out.splitlines() if line.startswith("overall")]
    assert [row[1] for row in rows] == list(DEMO_METHODS) == ["ar", "kangaroo", HEADLINE_METHOD]
    assert all(row[-2:] == ["4/4", "yes"] for row in rows[1:])  # greedy: every method reproduced AR on every prompt
    assert f"{HEADLINE_METHOD} runs at" in out
    assert "kangaroo-lab generate" in out and "kangaroo-lab bench" in out


def test_demo_json(capsys):
    assert main(["demo", *TINY, "--max-new-tokens", "4", "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert {r["method"] for r in rec["runs"]} == set(DEMO_METHODS) and rec["environment"]["device"].startswith("cpu")
    assert all(r["identical_to_ar"] for r in rec["runs"] if r["method"] != "ar")
    assert set(rec["speedup"]) == set(DEMO_METHODS) - {"ar"} and rec["options"][HEADLINE_METHOD]["top_k"] == 4


# ------------------------------------------------------------------------------------ errors
@pytest.mark.parametrize(
    "args",
    [
        ["--prompt", "hi", "--threshold", "1.5"],
        ["--prompt", "hi", "--exit-layer", "0"],
        ["--prompt", "hi", "--exit-layer", "4"],  # tiny-random has 4 layers
        ["--prompt", "   "],
        ["--prompt", "hi", "--adapter", "no/such/adapter"],
        ["--prompt", "hi", "--max-new-tokens", "0"],
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(capsys, args):
    assert main(["generate", *TINY, *args]) == 2
    check_one_line_error(capsys)


def test_unknown_model(capsys):
    assert main(["generate", "--model", "no-such-model", "--prompt", "hi"]) == 2
    check_one_line_error(capsys)


def test_exit_layer_must_match_adapter_folder(capsys, tmp_path):
    new_adapter(load_model("tiny-random"), exit_layer=1).save(tmp_path)
    assert main(["generate", *TINY, "--prompt", "hi", "--adapter", str(tmp_path), "--exit-layer", "2"]) == 2
    check_one_line_error(capsys)


def check_one_line_error(capsys):
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert out == "" and len(lines) == 1 and lines[0].startswith("kangaroo-lab: error: "), err


@pytest.mark.parametrize("argv", [["--help"], ["generate", "--help"], ["demo", "--help"]])
def test_help_exits_0(capsys, argv):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 0
    assert "usage: kangaroo-lab" in capsys.readouterr().out
