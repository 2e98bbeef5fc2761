"""ILLEGAL negative controls: known-bad evaluation schemes, kept so every audit can be shown to catch each one.

They are reachable only through explicit ``illegal-*`` mode names, report ``legal=False`` with the rule they break,
and send every scoring pass and every update through the same observer as the legal modes.

* ``illegal-multi-epoch-last`` / ``-min`` (PG-TTT-003, PRs #596/#605): per-document LoRA TTT for several epochs,
  per-document sums reset every epoch, and only the last (or the lowest-average) epoch reported, multiplied by the
  0.98 "temperature" of quirk Q12. Later epochs score chunks with adapters trained on those very chunks and on
  later ones.
* ``illegal-pre-eval-ttt`` (PG-TTT-001): SGD epochs over the validation tokens, then a sliding-window score.
* ``illegal-rescore`` (PG-TTT-004): the legal score-first pass (s_0), then a second sliding pass with the adapted
  weights, and s_1 is reported.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .config import Config
from .evaluate import Windows, begin, device_val, finish, score_windows, truncate
from .model import GPT
from .progress import Progress
from .ttt import (
    adam_step,
    doc_batches,
    documents,
    frozen,
    lora_chunk_forward,
    make_adam,
    make_adapters,
    n_chunks,
    score_first_pass,
    sgd_step,
)


def eval_multi_epoch(model: GPT, val_all: np.ndarray, bytes_at: torch.Tensor, cfg: Config, observer=None,
                     keep_nll: bool = False, progress: bool = False, select: str = "last") -> dict:
    t = cfg.ttt
    mode = f"illegal-multi-epoch-{select}"
    val = device_val(model, val_all)
    docs = documents(val_all, cfg.model.bos_id)
    tracker, t0 = begin(observer, bytes_at, keep_nll, mode, False, val.numel(), rule="PG-TTT-003",
                        state_scope="per-document", doc_starts=[d.start for d in docs], epochs=t.control_epochs,
                        nll_scale=t.control_nll_scale)
    adapters = make_adapters(model, cfg)
    model.eval()
    with frozen(model), Progress(len(docs), mode, "docs", enabled=progress) as bar:
        for batch in doc_batches(docs, cfg):
            adapters.reset()
            opt = make_adam(adapters, cfg)
            chunks = max(n_chunks(d, t.lora_chunk) for d in batch)
            total_steps, step = t.control_epochs * chunks, 0
            kept: dict[int, tuple[float, torch.Tensor, torch.Tensor]] = {}
            for _ in range(t.control_epochs):
                acc: dict[int, list] = {d.index: [[], []] for d in batch}  # overwritten every epoch
                for c in range(chunks):
                    for group in opt.param_groups:
                        group["lr"] = t.lora_lr * max(0.5 * (1 + math.cos(math.pi * step / total_steps)), 0.1)
                    out = lora_chunk_forward(model, adapters, val, batch, c, cfg)
                    tracker.observe_score(out.positions, out.nll)
                    for d, p, n in zip(out.docs, out.positions.split(out.counts), out.nll.detach().split(out.counts)):
                        acc[d.index][0].append(p)
                        acc[d.index][1].append(n)
                    if out.loss is not None:
                        adam_step(out.loss, opt, tracker, out.reads, out.trained)
                    step += 1
                for index, (ps, ns) in acc.items():
                    nll = torch.cat(ns)
                    if select == "last" or index not in kept or nll.mean().item() < kept[index][0]:
                        kept[index] = (nll.mean().item(), torch.cat(ps), nll)
            for _, pos, nll in kept.values():
                tracker.report(pos, nll, nll_scale=t.control_nll_scale)
            bar.update(len(batch))
    return finish(tracker, t0, mode)


def eval_multi_epoch_min(*args, **kw) -> dict:
    return eval_multi_epoch(*args, select="min", **kw)


def eval_pre_eval_ttt(model: GPT, val_all: np.ndarray, bytes_at: torch.Tensor, cfg: Config, observer=None,
                      keep_nll: bool = False, progress: bool = False) -> dict:
    e, t = cfg.eval, cfg.ttt
    val = device_val(model, truncate(val_all, e.seq_len))
    tracker, t0 = begin(observer, bytes_at, keep_nll, "illegal-pre-eval-ttt", False, val.numel(),
                        rule="PG-TTT-001", epochs=t.epochs)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=t.lr, momentum=t.momentum)
    L, n_seq = e.seq_len, (val.numel() - 1) // e.seq_len
    with Progress(t.epochs * n_seq, "illegal-pre-eval-ttt", "seqs", enabled=progress) as bar:
        for _ in range(t.epochs):
            for s in range(0, n_seq, t.batch_seqs):
                e_ = min(s + t.batch_seqs, n_seq)
                a, b = s * L, e_ * L
                sgd_step(model, names, opt, val[a:b].view(-1, L), val[a + 1 : b + 1].view(-1, L), t.grad_clip,
                         tracker, (a, b + 1))
                bar.update(e_ - s)
    windows = Windows(val.numel() - 1, e.seq_len, e.stride)
    score_windows(model, val, windows, 0, len(windows), e.batch_seqs, tracker)
    return finish(tracker, t0, "illegal-pre-eval-ttt")


def eval_rescore(model: GPT, val_all: np.ndarray, bytes_at: torch.Tensor, cfg: Config, observer=None,
                 keep_nll: bool = False, progress: bool = False) -> dict:
    e = cfg.eval
    val = device_val(model, truncate(val_all, e.seq_len))
    tracker, t0 = begin(observer, bytes_at, keep_nll, "illegal-rescore", False, val.numel(), rule="PG-TTT-004")
    score_first_pass(model, val, cfg, tracker, progress)
    first = tracker.restart_report()
    windows = Windows(val.numel() - 1, e.seq_len, e.stride)
    score_windows(model, val, windows, 0, len(windows), e.batch_seqs, tracker)
    res = finish(tracker, t0, "illegal-rescore")
    res["first_pass_val_bpb"] = first["val_bpb"]
    return res
