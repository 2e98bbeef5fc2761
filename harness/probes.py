"""Dynamic probes of C1 and C2, with bounded cost; each result states exactly what was probed.

C1 future perturbation (the #1240 design): evaluate a prefix of the validation stream, then evaluate it again with
every token after position k replaced; the reported NLL of every position <= k must not change. Several cuts k lie
inside the scored range, each followed by scored positions: a cut past every scored window proves nothing (a
non-causal scorer passes it), so such a cut is reported as inconclusive, never as a pass. In deterministic
fp32 on the CPU the requirement is bit-identical (``atol=0``); elsewhere (GPU kernels, bf16) a stated tolerance.
Scoring schemes that let later tokens reach earlier scores — pre-eval TTT, multi-epoch or min-NLL TTT, re-scoring
after TTT, SLOT on the scored region, bidirectional attention — change them.

C2 normalization: at sampled positions, the full distribution the scorer commits for position t must sum to 1 and
must not change when the realized token x_t is swapped for other values (a scorer that mixes in a probability only
for the gold token, or keys a cache on it, fails both).
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from audits.dynamic_result import Probe

EvalFn = Callable[[np.ndarray], np.ndarray]          # tokens -> reported NLL per position (NaN = not scored)
DistFn = Callable[[np.ndarray, int], np.ndarray]     # (context tokens, realized next token) -> distribution (V,)


def choose_k(tokens: np.ndarray, bos_id: int = 1, min_context: int = 2) -> int:
    """A third of the way into the prefix, moved off a document boundary (see :func:`off_boundary`)."""
    return off_boundary(tokens, max(tokens.size // 3, min_context), bos_id)


def off_boundary(tokens: np.ndarray, k: int, bos_id: int = 1) -> int:
    """k moved right while the token after it starts a document: positions up to k then share a document with the
    perturbed ones (what a per-document leak such as multi-epoch TTT or SLOT changes)."""
    while k + 1 < tokens.size - 1 and tokens[k + 1] == bos_id:
        k += 1
    return min(k, tokens.size - 2)


CUT_ALIGN, CUT_OFFSET = 128, 61


def choose_cuts(tokens: np.ndarray, scored: np.ndarray, n: int = 3, bos_id: int = 1) -> list[int]:
    """``n`` cuts spread over the scored range (at the quantiles (i+1)/(n+1) of the scored positions), each moved to
    the middle of a 128-position block — inside a window for every power-of-two window length of 128 or more, where
    a window that crosses the cut lets a non-causal scorer leak — and off a document boundary, and each followed by a
    scored position (a cut past every scored window compares nothing that could have changed)."""
    pos = np.flatnonzero(scored)
    if pos.size < 2:
        return []
    last = int(pos[-1])
    cuts: list[int] = []
    for i in range(n):
        k = int(pos[int((i + 1) * (pos.size - 1) / (n + 1))])
        mid = k - k % CUT_ALIGN + CUT_OFFSET
        k = mid if pos[0] <= mid < last else k
        k = off_boundary(tokens, k, bos_id)
        if pos[0] <= k < last and k not in cuts:
            cuts.append(k)
    return cuts


def perturb_after(tokens: np.ndarray, k: int, vocab: int, seed: int = 0, avoid: Sequence[int] = (0, 1)) -> np.ndarray:
    """A copy with every token after position k replaced by a different, random one (never BOS or pad, so the
    document structure of the prefix up to k is unchanged and later documents merge into one)."""
    rng = np.random.default_rng(seed)
    out = tokens.copy()
    n = tokens.size - k - 1
    if n <= 0:
        return out
    allowed = np.setdiff1d(np.arange(vocab), np.asarray(avoid))
    new = allowed[rng.integers(0, allowed.size, n)]
    same = new == tokens[k + 1 :]
    new[same] = allowed[(np.searchsorted(allowed, new[same]) + 1) % allowed.size]
    out[k + 1 :] = new.astype(tokens.dtype)
    return out


NOISE_MARGIN = 4.0   # a change counts when it exceeds this many times the run-to-run noise of a control run
NOISE_LIMIT = 0.1    # nats: a run noisier than this cannot show a dependence on future tokens


def future_perturbation(eval_fn: EvalFn, tokens: np.ndarray, vocab: int, k: int | Sequence[int] | None = None,
                        atol: float = 0.0, seed: int = 0, what: str = "evaluation", cuts: int = 3,
                        control: bool = False) -> Probe:
    """Run ``eval_fn`` on ``tokens``, then once per cut k on a copy whose tokens after k are replaced, and compare the
    NLL at 1..k. Cuts (``k``, else :func:`choose_cuts` over what the first run scored) lie inside the scored range; a
    cut after which nothing is scored is inconclusive (nothing that could have changed was compared). FAIL at the
    first cut where an NLL changed (the remaining cuts are not run); PASS when at least one cut was conclusive and
    none changed; WARN (inconclusive) when none was conclusive.

    ``control``: first run ``eval_fn`` once more on the same tokens. A whole training script on a GPU is not
    reproducible run to run (atomics in the backward pass, then quantization rounding a few weights the other way),
    so identical inputs move some NLLs by more than a kernel-level tolerance; the control measures that, and a change
    then counts only above ``NOISE_MARGIN`` times it (or ``atol``, whichever is larger). A run noisier than
    ``NOISE_LIMIT`` is inconclusive."""
    a = np.asarray(eval_fn(tokens), dtype=np.float64)
    scored = ~np.isnan(a)
    ks = choose_cuts(tokens, scored, cuts) if k is None else ([int(k)] if np.isscalar(k) else [int(x) for x in k])
    head = f"{what} of a {tokens.size:,}-token split"
    if not ks:
        return Probe("future-perturbation", "C1", "WARN", f"{head}; no cut placed", None,
                     "inconclusive: fewer than two positions were scored, so no cut has a scored position after it")
    noise_note = ""
    if control:
        c = np.asarray(eval_fn(tokens.copy()), dtype=np.float64)
        same = scored & ~np.isnan(c)
        noise = float(np.abs(a[same] - c[same]).max()) if same.any() else float("inf")
        moved = int((np.abs(a[same] - c[same]) > atol).sum())
        noise_note = (f"; a control run on the same tokens moved {moved:,} of {int(same.sum()):,} NLLs, by up to "
                      f"{noise:.3g}")
        if not noise <= NOISE_LIMIT:
            return Probe("future-perturbation", "C1", "WARN", head + noise_note, None,
                         f"inconclusive: the run is not reproducible (identical inputs moved NLLs by up to {noise:.3g}"
                         f" nats, over {NOISE_LIMIT:g}), so a dependence on future tokens cannot be told from noise")
        atol = max(atol, NOISE_MARGIN * noise)
    req = "bit-identical (deterministic fp32)" if atol == 0 else f"|diff| <= {atol:.3g}"
    done, worst = [], 0.0
    for kk in ks:
        b = np.asarray(eval_fn(perturb_after(tokens, kk, vocab, seed)), dtype=np.float64)
        sl = slice(1, kk + 1)
        both = scored[sl] & ~np.isnan(b[sl])
        n_cmp = int(both.sum())
        after = int(scored[kk + 1 :].sum())
        if n_cmp == 0 or after == 0:
            why = "no position <= k was scored in both runs" if n_cmp == 0 else "no scored position follows it"
            done.append((kk, "inconclusive", n_cmp, why))
            continue
        diff = np.where(both, np.abs(a[sl] - b[sl]), 0.0)
        worst = max(worst, float(diff.max()))
        bad = np.flatnonzero((diff > atol) | (scored[sl] != ~np.isnan(b[sl])))
        if bad.size:
            p = int(bad[0]) + 1
            done.append((kk, "FAIL", n_cmp, f"{bad.size:,} of {n_cmp:,} reported NLLs at positions <= {kk:,} "
                                            f"changed (first at position {p:,}: {a[p]:.6f} -> {b[p]:.6f})"))
            break
        done.append((kk, "PASS", n_cmp, f"{n_cmp:,} NLLs unchanged, {after:,} scored positions after it"))
    sp = np.flatnonzero(scored)
    span = f" (scored positions {int(sp[0]):,}..{int(sp[-1]):,})" if sp.size else " (nothing scored)"
    probed = (f"{head}{span}, then again with every token after a cut replaced (seed "
              f"{seed}), at {len(done)} of {len(ks)} cuts inside the scored range: "
              + "; ".join(f"k={kk:,} {v.lower() if v != 'inconclusive' else v} ({n:,} compared)"
                          for kk, v, n, _ in done) + f"; required {req} at 1..k" + noise_note)
    verdicts = [v for _, v, _, _ in done]
    if "FAIL" in verdicts:
        kk, _, _, msg = done[-1]
        return Probe("future-perturbation", "C1", "FAIL", probed, worst,
                     f"cut at {kk:,}: {msg} when only tokens after {kk:,} changed: scores depend on future tokens")
    if "PASS" in verdicts:
        inc = verdicts.count("inconclusive")
        return Probe("future-perturbation", "C1", "PASS", probed, worst,
                     "every reported NLL up to each cut is unchanged"
                     + (" beyond the run-to-run noise" if noise_note else "") + " when the tokens after it change "
                     f"({verdicts.count('PASS')} conclusive cuts" + (f", {inc} inconclusive" if inc else "") + ")")
    return Probe("future-perturbation", "C1", "WARN", probed, None,
                 "inconclusive: " + "; ".join(f"cut {kk:,}: {why}" for kk, _, _, why in done))


def sample_positions(tokens: np.ndarray, n: int, min_context: int = 1, seed: int = 0,
                     scored: np.ndarray | None = None) -> list[int]:
    """``n`` positions drawn from those the evaluation scored (``scored`` mask), else from the whole prefix."""
    rng = np.random.default_rng(seed)
    pool = np.arange(min_context, tokens.size)
    if scored is not None:
        pool = pool[np.asarray(scored, dtype=bool)[min_context : tokens.size]]
    return sorted(int(p) for p in rng.choice(pool, size=min(n, pool.size), replace=False))


def normalization(dist_fn: DistFn, tokens: np.ndarray, vocab: int, positions: Sequence[int] | None = None,
                  swaps: int = 3, sum_tol: float = 1e-4, atol: float = 0.0, context: int | None = None,
                  seed: int = 0, what: str = "scorer", scored: np.ndarray | None = None) -> Probe:
    """At each sampled position t (drawn from the positions the evaluation scored, ``scored``, when given; WARN
    inconclusive when it scored none): p_t = dist_fn(tokens[:t], x_t) must sum to 1 (within ``sum_tol``) and equal
    dist_fn(tokens[:t], v) for ``swaps`` other values v (within ``atol``; 0 = bit-identical)."""
    positions = list(positions) if positions is not None else sample_positions(tokens, 8, seed=seed, scored=scored)
    if not positions:
        return Probe("normalization", "C2", "WARN", f"{what}: no scored position to sample", None,
                     "inconclusive: the evaluation scored no position of the probed prefix")
    rng = np.random.default_rng(seed)
    worst_sum, worst_swap, first_bad = 0.0, 0.0, None
    for t in positions:
        lo = 0 if context is None else max(0, t - context)
        ctx = tokens[lo:t]
        x = int(tokens[t])
        p0 = np.asarray(dist_fn(ctx, x), dtype=np.float64)
        if p0.shape != (vocab,):
            raise ValueError(f"distribution of shape {p0.shape}, expected ({vocab},)")
        s = abs(float(p0.sum()) - 1.0)
        worst_sum = max(worst_sum, s)
        if s > sum_tol and first_bad is None:
            first_bad = f"position {t:,}: the distribution sums to {p0.sum():.6f}"
        others = rng.choice(np.setdiff1d(np.arange(vocab), [x]), size=min(swaps, vocab - 1), replace=False)
        for v in others:
            pv = np.asarray(dist_fn(ctx, int(v)), dtype=np.float64)
            d = float(np.abs(pv - p0).max())
            worst_swap = max(worst_swap, d)
            if d > atol and first_bad is None:
                j = int(np.argmax(np.abs(pv - p0)))
                first_bad = (f"position {t:,}: swapping x_t {x} -> {int(v)} changes p_t({j}) by {d:.3g} "
                             f"(sum {pv.sum():.6f})")
    req = "bit-identical" if atol == 0 else f"within {atol:g}"
    ctx_note = "the whole prefix" if context is None else f"the last {context} tokens"
    probed = (f"{what}: full distribution over {vocab} tokens at {len(positions)} positions "
              f"({', '.join(f'{p:,}' for p in positions[:8])}{', ...' if len(positions) > 8 else ''}) with "
              f"{ctx_note} as context; sum within {sum_tol:g} of 1, and {req} under {swaps} swaps of x_t each")
    mad = max(worst_sum, worst_swap)
    if first_bad is None:
        return Probe("normalization", "C2", "PASS", probed, mad,
                     f"every probed distribution sums to 1 (worst {worst_sum:.2e}) and ignores the realized token")
    return Probe("normalization", "C2", "FAIL", probed, mad,
                 f"not a committed normalized distribution: {first_bad}; worst |sum-1| {worst_sum:.3g}, worst "
                 f"change under a swap {worst_swap:.3g}")


# --- the reference model -------------------------------------------------------------------------------------------


def reference_eval_fn(mode: str, make_model: Callable, cfg, sp=None, bytes_fn: Callable | None = None) -> EvalFn:
    """tokens -> reported NLL per position, from a fresh copy of the model evaluated in ``mode``."""
    import torch

    from reference_model.modes import MODES

    def run(tokens: np.ndarray) -> np.ndarray:
        bytes_at = torch.ones(tokens.size, dtype=torch.long) if bytes_fn is None else bytes_fn(tokens)
        res = MODES[mode].function()(make_model(), tokens, bytes_at, cfg, None, keep_nll=True)
        return res["nll"].double().numpy()

    return run


def model_dist_fn(model, softmax: bool = True) -> DistFn:
    """The reference model's committed distribution for the next position: softmax of its logits after the
    context (the realized token is ignored, as it must be)."""
    import torch

    @torch.no_grad()
    def dist(ctx: np.ndarray, realized: int) -> np.ndarray:
        x = torch.as_tensor(np.asarray(ctx, dtype=np.int64))[None]
        logits = model.logits(x)[0, -1].float()
        return torch.softmax(logits, -1).double().numpy()

    return dist
