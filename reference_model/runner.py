"""run-reference: train and evaluate each seed, write a run directory, print the per-seed table with statistics.

Run directory: ``run_spec.json`` (versions, git, hardware, config, seeds, data digests), ``train_seed{S}.log`` in the
official grammar, ``final_model_seed{S}.int6.ptz`` (the artifact), ``results.json`` and ``table.txt``.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import data, metric, runlog, runspec, stats
from .config import Config
from .errors import InputError, MissingPathError
from .evaluate import eval_sliding, eval_standard
from .model import compile_for_eval
from .modes import MODES
from .observe import Observer
from .prepare import ensure_default_data
from .quant import export, load_artifact
from .tokenizer import check_tokens, check_vocab, load_tokenizer
from .train import Trainer, init_distributed

DEFAULT_SEEDS = (1337, 42, 2025)
RESULTS_SCHEMA = "scorefirst.reference.results/1"


@dataclass
class RunOptions:
    cfg: Config
    seeds: list[int]
    ttt: str = "score-first"
    out: Path | None = None
    data_path: Path | None = None
    tokenizer_path: Path | None = None
    cache_dir: Path | None = None
    baseline_bpb: list[float] | None = None
    baseline_name: str | None = None
    progress: bool = True
    observer: Observer | None = None
    argv: list[str] = field(default_factory=list)


def resolve_data(opts: RunOptions) -> tuple[Path, Path]:
    vocab = opts.cfg.model.vocab_size
    if opts.data_path is None:
        data_path, tok, _ = ensure_default_data(opts.cache_dir, vocab, opts.tokenizer_path, opts.progress)
        return data_path, tok
    data_path = Path(opts.data_path)
    tok = opts.tokenizer_path or data.tokenizer_file(data_path.parent.parent, vocab)
    if not Path(tok).is_file():
        raise MissingPathError(f"tokenizer not found: {tok} (pass --tokenizer-path)")
    return data_path, Path(tok)


class Logger:
    def __init__(self, path: Path, rank: int):
        self.path, self.rank = path, rank

    def __call__(self, line: str) -> None:
        if self.rank == 0:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(line + "\n")


def _brief(res: dict) -> dict:
    keep = ("val_loss", "val_bpb", "loss_sum", "tokens", "bytes", "updates", "eval_ms", "first_pass_val_bpb")
    return {k: res[k] for k in keep if k in res}


def _eval_model(artifact: Path, cfg: Config, device: torch.device):
    """A fresh model from the artifact, compiled for evaluation on CUDA."""
    model = load_artifact(artifact, cfg, device)
    return compile_for_eval(model) if device.type == "cuda" and cfg.train.compile else model


def run_seed(opts: RunOptions, seed: int, run_dir: Path, data_path: Path, val: np.ndarray,
             bytes_at: torch.Tensor, rank: int, world: int, device: torch.device, header: list[str]) -> dict:
    cfg, mode = opts.cfg, MODES[opts.ttt]
    log = Logger(run_dir / f"train_seed{seed}.log", rank)
    trainer = Trainer(cfg, device, seed, rank, world)
    for line in header + [f"seed:{seed}", f"model_params:{trainer.model.num_params()}",
                          f"world_size:{world} grad_accum_steps:{trainer.grad_accum}"]:
        log(line)
    validate = (lambda m: eval_standard(m, val, bytes_at, cfg)) if rank == 0 else None
    tr = trainer.run(data_path, log, validate, opts.progress)
    out = {"seed": seed, "steps": tr.steps, "train_seconds": tr.train_ms / 1000, "tokens_seen": tr.tokens_seen,
           "peak_alloc_mib": tr.peak_alloc_mib}
    if rank != 0:
        return out
    pre = eval_standard(tr.model, val, bytes_at, cfg)
    for line in runlog.eval_lines("DIAGNOSTIC post_ema", pre, pre["eval_ms"]):
        log(line)
    artifact = run_dir / f"final_model_seed{seed}.int6.ptz"
    q = export(tr.model, artifact, cfg)
    log(f"Serialized model int6+{q['codec']}: {q['model_bytes']} bytes")
    log(f"Code size: {q['code_bytes']} bytes")
    log(f"Total submission size int6+{q['codec']}: {q['artifact_bytes']} bytes")
    floors = q["floor_rows"]
    log(f"quant_scale_floor_rows: {sum(floors.values()) / max(len(floors), 1):.4f} (mean fraction over "
        f"{len(floors)} quantized tensors)")
    model = _eval_model(artifact, cfg, device)
    post = eval_standard(model, val, bytes_at, cfg)
    for line in runlog.eval_lines("final_int6_roundtrip", post, post["eval_ms"]):
        log(line)
    sliding = eval_sliding(model, val, bytes_at, cfg, progress=opts.progress)
    for line in runlog.eval_lines("final_int6_sliding_window", sliding, sliding["eval_ms"],
                                  f"stride:{cfg.eval.stride}"):
        log(line)
    out.update(pre_quant=_brief(pre), post_quant=_brief(post), sliding=_brief(sliding), post_ttt=None,
               artifact_bytes=q["artifact_bytes"], model_bytes=q["model_bytes"], code_bytes=q["code_bytes"],
               within_limit=q["within_limit"], codec=q["codec"], quant_floor_rows=floors)
    if opts.ttt != "none":
        fresh = _eval_model(artifact, cfg, device)
        res = mode.function()(fresh, val, bytes_at, cfg, opts.observer, progress=opts.progress)
        extra = "" if mode.legal else f"ILLEGAL:{mode.rule} negative_control"
        for line in runlog.eval_lines(mode.log_label, res, res["eval_ms"], extra):
            log(line)
        out["post_ttt"] = _brief(res)
    out["eval_seconds"] = sum(out[k]["eval_ms"] for k in ("post_quant", "sliding", "post_ttt") if out.get(k)) / 1000
    return out


def significance(opts: RunOptions, seeds: list[dict]) -> dict:
    """Candidate = post-TTT (or sliding without TTT); baseline = stated values, else this run's own previous stage."""
    cand_key = "post_ttt" if opts.ttt != "none" else "sliding"
    cand_bpb = [s[cand_key]["val_bpb"] for s in seeds]
    cand_nats = [s[cand_key]["val_loss"] for s in seeds]
    if opts.baseline_bpb:
        name = opts.baseline_name or "stated baseline"
        ratio = statistics_ratio(seeds, cand_key)
        base_bpb = list(opts.baseline_bpb)
        base_nats = [b * math.log(2) * ratio for b in base_bpb]
        note = f"{name} (given in bpb; nats/token = bpb * ln2 * bytes/token of this run, {ratio:.4f})"
    else:
        base_key = "sliding" if opts.ttt != "none" else "post_quant"
        base_bpb = [s[base_key]["val_bpb"] for s in seeds]
        base_nats = [s[base_key]["val_loss"] for s in seeds]
        what = "TTT" if opts.ttt != "none" else "sliding window"
        note = f"this run's own per-seed {base_key} results (same seeds, no {what})"
    return {"candidate": cand_key, "baseline": note, "baseline_bpb": base_bpb,
            "readme": stats.readme_test(cand_nats, base_nats), "welch": stats.welch_test(cand_bpb, base_bpb)}


def statistics_ratio(seeds: list[dict], key: str) -> float:
    return float(np.mean([s[key]["bytes"] / s[key]["tokens"] for s in seeds]))


def seed_line(seed: dict, ttt: str) -> str:
    """One seed's result, printed the moment it finishes (a full run takes minutes per seed)."""
    cols = [("pre_quant", "pre-quant"), ("post_quant", "post-quant"), ("sliding", "sliding")]
    if ttt != "none":
        cols.append(("post_ttt", "post-TTT"))
    bpb = " · ".join(f"{label} {seed[k]['val_bpb']:.4f}" for k, label in cols)
    return (f"seed {seed['seed']} done: val_bpb {bpb} · artifact {seed['artifact_bytes']} B · "
            f"train {seed['train_seconds']:.1f} s · eval {seed['eval_seconds']:.1f} s")


def format_table(results: dict) -> str:
    mode = MODES[results["ttt"]]
    cols = [("pre_quant", "pre-quant"), ("post_quant", "post-quant"), ("sliding", "sliding")]
    if results["ttt"] != "none":
        cols.append(("post_ttt", "post-TTT"))
    head = f"{'seed':>6} {'steps':>6} " + " ".join(f"{c[1]:>10}" for c in cols) + \
        f" {'artifact B':>11} {'train s':>8} {'eval s':>7}"
    lines = [f"config {results['config']} · ttt {results['ttt']} · {mode.label} · val_bpb per seed", head]
    for s in results["seeds"]:
        lines.append(f"{s['seed']:>6} {s['steps']:>6} " + " ".join(f"{s[k]['val_bpb']:>10.4f}" for k, _ in cols) +
                     f" {s['artifact_bytes']:>11} {s['train_seconds']:>8.1f} {s['eval_seconds']:>7.1f}")
    for stat in ("mean", "std"):
        lines.append(f"{stat:>6} {'':>6} " + " ".join(f"{results['summary'][k][stat]:>10.4f}" for k, _ in cols))
    sig = results["significance"]
    lines.append(f"candidate: {sig['candidate']} · baseline: {sig['baseline']}")
    for key in ("readme", "welch"):
        t = sig[key]
        lines.append(f"[{'PASS' if t['passed'] else 'FAIL'}] {t['policy']}: t={t['t']:.3f} df={t['df']:.2f} "
                     f"p={t['p']:.4g}")
    if not mode.legal:
        lines.append(f"ILLEGAL NEGATIVE CONTROL ({mode.rule}): {mode.summary}. These numbers are not valid scores.")
    return "\n".join(lines)


def run_reference(opts: RunOptions) -> dict:
    if opts.ttt not in MODES or opts.ttt == "standard":
        raise InputError(f"unknown --ttt mode {opts.ttt!r}")
    if not opts.seeds:
        raise InputError("need at least one seed")
    opts.cfg.check()
    rank, world, device = init_distributed()
    data_path, tok_path = resolve_data(opts)
    sp = load_tokenizer(tok_path)
    check_vocab(sp, opts.cfg.model.vocab_size, tok_path)
    val = data.load_validation(data_path)
    check_tokens(int(val.max()), sp, data.list_shards(data_path, "val")[0])
    train_first = data.read_shard(data.list_shards(data_path, "train")[0])
    check_tokens(int(train_first.max()), sp, data.list_shards(data_path, "train")[0])
    if val.size <= opts.cfg.eval.seq_len:
        raise InputError(f"validation split of {val.size} tokens is shorter than eval seq_len")
    lut = metric.build_luts(sp, opts.cfg.model.vocab_size)
    bytes_at = torch.from_numpy(metric.target_bytes(val, lut).astype(np.int64)).to(device)

    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = Path(opts.out or Path("out") / "reference" / f"{stamp}-{opts.cfg.name}-{opts.ttt}")
    run_dir.mkdir(parents=True, exist_ok=True)
    mode = MODES[opts.ttt]
    spec = {"schema": "scorefirst.reference.run_spec/1",
            "tool": {"name": "scorefirst", "version": runspec.tool_version()}, "git": runspec.git_state(),
            "code": runspec.code_digest(), "libraries": runspec.libraries(),
            "hardware": runspec.hardware(), "world_size": world, "device": str(device), "argv": opts.argv,
            "config": opts.cfg.to_dict(), "seeds": opts.seeds, "ttt": opts.ttt, "legal": mode.legal,
            "rule": mode.rule, "data": runspec.data_manifest(data_path, tok_path), "started": stamp}
    if rank == 0:
        (run_dir / "run_spec.json").write_text(json.dumps(spec, indent=2) + "\n")
    header = [f"scorefirst {spec['tool']['version']} run-reference config:{opts.cfg.name} ttt:{opts.ttt} "
              f"{mode.label}",
              " ".join(f"{k}:{v}" for k, v in spec["libraries"].items()),
              f"git:{spec['git']['commit']} dirty:{spec['git']['dirty']} code_sha256:{spec['code']['sha256']}",
              f"hardware: {json.dumps(spec['hardware'])}",
              f"hyperparameters: {json.dumps(opts.cfg.to_dict())}",
              f"val_tokens:{val.size} data_path:{data_path} tokenizer:{tok_path}"]
    seeds = []
    for seed in opts.seeds:
        if opts.progress and rank == 0:
            print(f"seed {seed}: training and evaluating ({opts.cfg.name}, ttt {opts.ttt})", file=sys.stderr)
        seeds.append(run_seed(opts, seed, run_dir, data_path, val, bytes_at, rank, world, device, header))
        if rank == 0:
            print(seed_line(seeds[-1], opts.ttt), flush=True)
    if rank != 0:
        return {}
    keys = ["pre_quant", "post_quant", "sliding"] + (["post_ttt"] if opts.ttt != "none" else [])
    results = {"schema": RESULTS_SCHEMA, "config": opts.cfg.name, "ttt": opts.ttt, "legal": mode.legal,
               "rule": mode.rule, "label": mode.label, "mode_summary": mode.summary, "run_dir": str(run_dir),
               "seeds": seeds,
               "summary": {k: stats.summary([s[k]["val_bpb"] for s in seeds]) for k in keys},
               "significance": significance(opts, seeds) if len(seeds) > 1 else None}
    for k in ("artifact_bytes", "train_seconds", "eval_seconds"):
        results["summary"][k] = stats.summary([float(s[k]) for s in seeds])
    if results["significance"] is None:
        results["significance"] = {"candidate": keys[-1], "baseline": "n/a (one seed)",
                                   "readme": _na(stats.README_POLICY), "welch": _na(stats.WELCH_POLICY)}
    (run_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    table = format_table(results)
    (run_dir / "table.txt").write_text(table + "\n")
    results["table"] = table
    return results


def _na(policy: str) -> dict:
    return {"policy": policy, "t": float("nan"), "df": float("nan"), "p": float("nan"), "passed": False}
