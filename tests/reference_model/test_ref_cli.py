"""The run-reference and prepare-data subcommands: outputs, labels, and one-line exit-coded errors."""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from reference_model import commands, data, prepare, runlog

REPO = Path(__file__).resolve().parents[2]
FAST = ["--set", "train.iterations=4", "--set", "train.warmdown_iters=2", "--set", "train.warmup_steps=1",
        "--set", "ttt.chunk_tokens=512", "--set", "ttt.control_epochs=2", "--no-progress"]


@pytest.fixture(scope="module")
def small_data(tmp_path_factory, default_data, embedded_docs):
    """The embedded corpus with a ~3,000-token validation split, in the official layout."""
    root = tmp_path_factory.mktemp("small")
    prepare.prepare(embedded_docs, root, tokenizer_path=default_data[1], val_tokens=3000,
                    progress=False)
    return data.dataset_dir(root, 1024), data.tokenizer_file(root, 1024)


def _main(argv, capsys):
    code = commands.main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_commands_module_imports_no_torch():
    code = "import sys, reference_model.commands as c; print('torch' in sys.modules, 'numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_register_adds_both_subcommands():
    parser = argparse.ArgumentParser()
    commands.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["run-reference", "--seeds", "3", "--ttt", "lora"])
    assert args.func is commands.run_reference_cmd and args.config == "tiny" and args.seeds == 3
    args = parser.parse_args(["prepare-data", "--out", "x"])
    assert args.func is commands.prepare_data_cmd
    with pytest.raises(SystemExit):
        parser.parse_args(["run-reference", "--ttt", "multi-epoch"])  # controls need their illegal-* name


def test_run_reference_writes_the_run_directory(small_data, tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, _ = _main(["run-reference", "--seeds", "2", "--data-path", str(small_data[0]),
                             "--tokenizer-path", str(small_data[1]), "--out", str(out), *FAST], capsys)
    assert code == 0
    assert {p.name for p in out.iterdir()} == {"run_spec.json", "results.json", "table.txt", "train_seed1337.log",
                                                "train_seed42.log", "final_model_seed1337.int6.ptz",
                                                "final_model_seed42.int6.ptz"}
    spec = json.loads((out / "run_spec.json").read_text())
    assert spec["seeds"] == [1337, 42] and spec["config"]["name"] == "tiny" and spec["legal"] is True
    assert spec["libraries"]["torch"] and "commit" in spec["git"] and spec["hardware"]["cpu_count"]
    assert spec["data"]["shards"] and spec["data"]["tokenizer_sha256"]
    res = json.loads((out / "results.json").read_text())
    seed = res["seeds"][0]
    for key in ("pre_quant", "post_quant", "sliding", "post_ttt"):
        assert 0 < seed[key]["val_bpb"] < 10
    assert seed["artifact_bytes"] == seed["model_bytes"] + seed["code_bytes"] and seed["train_seconds"] > 0
    assert res["summary"]["post_ttt"]["n"] == 2 and res["label"] == "LEGAL"
    assert "0.005 nats" in res["significance"]["readme"]["policy"]
    assert "Welch" in res["significance"]["welch"]["policy"]
    log = (out / "train_seed42.log").read_text().splitlines()
    labels = {runlog.parse_line(line)["label"] for line in log}
    assert {"final_int6_roundtrip_exact", "final_int6_sliding_window_exact", "legal_ttt_exact"} <= labels
    assert any(line.startswith("step:4/4 val_loss:") for line in log)
    assert "mean" in stdout and "std" in stdout and "Welch" in stdout and "run directory:" in stdout
    # each seed's result is printed as it finishes, before the table
    lines = stdout.splitlines()
    done = [i for i, line in enumerate(lines) if line.startswith("seed ") and " done: val_bpb " in line]
    assert [lines[i].split()[1] for i in done] == ["1337", "42"]
    assert done[-1] < next(i for i, line in enumerate(lines) if line.startswith("config tiny"))
    s0 = res["seeds"][0]
    assert lines[done[0]] == (f"seed 1337 done: val_bpb pre-quant {s0['pre_quant']['val_bpb']:.4f} · post-quant "
                              f"{s0['post_quant']['val_bpb']:.4f} · sliding {s0['sliding']['val_bpb']:.4f} · post-TTT "
                              f"{s0['post_ttt']['val_bpb']:.4f} · artifact {s0['artifact_bytes']} B · train "
                              f"{s0['train_seconds']:.1f} s · eval {s0['eval_seconds']:.1f} s")


def test_help_shows_the_defaults(capsys):
    from harness.cli import main

    assert main(["run-reference", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for phrase in ("(default: 3)", "(default: tiny)", "(default: score-first)", "(default: 1)",
                   "Needs the torch extra: pip install torch==2.13.0"):
        assert phrase in text, phrase
    assert "(default: None)" not in text


def test_missing_torch_names_the_pinned_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now fails as it does without the extra
    code, _, err = _main(["run-reference", "--no-progress"], capsys)
    assert code == 7
    (line,) = err.strip().splitlines()
    assert line.startswith("error: torch is required for run-reference and cannot be imported (")
    assert line.endswith("install the torch extra: pip install torch==2.13.0 'scorefirst[torch]' (from a checkout: "
                         "pip install torch==2.13.0 -e '.[torch]')")


def test_illegal_control_is_labelled_everywhere(small_data, tmp_path, capsys):
    out = tmp_path / "ctl"
    code, stdout, _ = _main(["run-reference", "--seeds", "1", "--ttt", "illegal-rescore", "--data-path",
                             str(small_data[0]), "--out", str(out), *FAST], capsys)
    assert code == 0 and "ILLEGAL" in stdout and "PG-TTT-004" in stdout
    res = json.loads((out / "results.json").read_text())
    assert res["legal"] is False and res["label"] == "ILLEGAL (PG-TTT-004)"
    log = (out / "train_seed1337.log").read_text()
    assert "ILLEGAL_rescore val_loss:" in log and "ILLEGAL:PG-TTT-004" in log


def _corrupt_copy(small_data, tmp_path):
    bad = tmp_path / "data"
    bad.mkdir()
    for p in small_data[0].glob("*.bin"):
        (bad / p.name).write_bytes(p.read_bytes())
    val = bad / "fineweb_val_000000.bin"
    val.write_bytes(val.read_bytes()[:-10])
    return bad


def test_bad_input_gives_one_line_errors_and_exit_codes(small_data, tmp_path, capsys):
    tok = str(small_data[1])
    cases = [
        (["run-reference", "--data-path", str(tmp_path / "missing"), "--tokenizer-path", tok], 3, "does not exist"),
        (["run-reference", "--data-path", str(_corrupt_copy(small_data, tmp_path)), "--tokenizer-path", tok], 4,
         "truncated or corrupt"),
        (["run-reference", "--set", "train.nope=1"], 6, "has no field"),
        (["run-reference", "--seed-list", "1,x"], 6, "comma-separated"),
        (["prepare-data", "--out", str(tmp_path / "o"), str(tmp_path / "none.jsonl")], 3, "input not found"),
    ]
    bad_jsonl = tmp_path / "bad.jsonl"
    bad_jsonl.write_text('{"text": "fine"}\n{not json}\n')
    cases.append((["prepare-data", "--out", str(tmp_path / "o"), str(bad_jsonl)], 6, "bad.jsonl:2"))
    for argv, code, message in cases:
        got, _, err = _main(argv + ["--no-progress"], capsys)
        assert got == code, (argv, err)
        assert message in err and err.count("\n") == 1 and err.startswith("error: ")
        assert "Traceback" not in err


def test_tokenizer_vocabulary_mismatch(small_data, tmp_path, capsys):
    docs = [" ".join(f"word{i % 97} token{i % 13}" for i in range(k, k + 300)) for k in range(30)]
    prepare.prepare(docs, tmp_path, vocab_size=320, val_tokens=500, progress=False)
    other = data.tokenizer_file(tmp_path, 320)
    code, _, err = _main(["run-reference", "--data-path", str(small_data[0]), "--tokenizer-path", str(other),
                          "--no-progress"], capsys)
    assert code == 5 and "does not match the model's vocab_size 1024" in err
    wrong = tmp_path / "wrong_tokens"
    wrong.mkdir()
    data.write_shard(wrong / "fineweb_val_000000.bin", np.array([1, 5, 2000, 7] * 100))
    data.write_shard(wrong / "fineweb_train_000000.bin", np.array([1, 5, 6, 7] * 100))
    code, _, err = _main(["run-reference", "--data-path", str(wrong), "--tokenizer-path", str(small_data[1]),
                          "--no-progress"], capsys)
    assert code == 5 and "token id 2000" in err


def test_prepare_data_command(tmp_path, small_data, capsys):
    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps({"text": f"Document {i}: " + "some words here. " * 20}) + "\n"
                            for i in range(30)))
    code, stdout, _ = _main(["prepare-data", str(docs), "--out", str(tmp_path / "root"), "--tokenizer-path",
                             str(small_data[1]), "--num-val-docs", "3", "--no-progress"], capsys)
    assert code == 0 and "validation tokens (3 documents)" in stdout
    assert (tmp_path / "root" / "datasets" / "fineweb10B_sp1024" / "fineweb_val_000000.bin").is_file()


@pytest.mark.slow
def test_default_tiny_run_three_seeds(tmp_path, default_data):
    """The documented default: `run-reference --seeds 3` on the embedded corpus (a few minutes on 2 cores)."""
    cache = default_data[0].parents[2].parent
    out = subprocess.run([sys.executable, "-m", "reference_model", "run-reference", "--seeds", "3", "--cache-dir",
                          str(cache), "--out", str(tmp_path / "run"), "--no-progress"], cwd=REPO,
                         capture_output=True, text=True, timeout=1200, check=False)
    assert out.returncode == 0, out.stderr
    res = json.loads((tmp_path / "run" / "results.json").read_text())
    assert [s["seed"] for s in res["seeds"]] == [1337, 42, 2025]
    assert res["summary"]["post_ttt"]["mean"] < res["summary"]["post_quant"]["mean"]


def test_inconsistent_overrides_are_input_errors(small_data, capsys):
    base = ["run-reference", "--seeds", "1", "--data-path", str(small_data[0]), "--no-progress",
            "--set", "train.iterations=1", "--set", "train.warmup_steps=0"]
    code, _, err = _main(base + ["--set", "ttt.chunk_tokens=100"], capsys)
    assert code == 6 and "ttt.chunk_tokens must be a multiple of the stride" in err
    code, _, err = _main(base + ["--set", "eval.stride=50"], capsys)
    assert code == 6 and "multiple of the stride" in err
