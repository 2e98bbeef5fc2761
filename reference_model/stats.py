"""Per-seed summaries and the two significance tests the competition used, each labelled with its policy.

* README record rule: the new mean val_loss beats the baseline by at least 0.005 nats with one-sided p < 0.01
  (one-sample t-test of the per-seed losses against baseline mean - 0.005).
* One-sided Welch t-test (the later leaderboard policy): candidate mean below baseline mean at p < 0.25, the
  "p<0.25 chronological progression cutoff" cocohearts applied in the final audits (PR #1902, #1900).

The Student-t tail comes from the regularized incomplete beta function (a continued fraction), so no scipy.
"""

from __future__ import annotations

import math
import statistics

README_POLICY = ("README record rule: beats the baseline by >= 0.005 nats at one-sided p < 0.01 "
                 "(one-sample t-test on per-seed val_loss)")
WELCH_ALPHA = 0.25


def welch_policy(alpha: float = WELCH_ALPHA) -> str:
    return f"one-sided Welch t-test, candidate mean < baseline mean at p < {alpha:g} (PR #1902 policy)"


WELCH_POLICY = welch_policy()


def _betacf(a: float, b: float, x: float) -> float:
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        for num in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                    -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1 + num * d
            d = 1 / (d if abs(d) > tiny else tiny)
            c = 1 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1) < 1e-15:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1) / (a + b + 2):
        return front * _betacf(a, b, x) / a
    return 1 - front * _betacf(b, a, 1 - x) / b


def t_sf(t: float, df: float) -> float:
    """P(T > t) for Student's t with ``df`` degrees of freedom."""
    if math.isinf(t):
        return 0.0 if t > 0 else 1.0
    tail = 0.5 * betainc(df / 2, 0.5, df / (df + t * t))
    return tail if t > 0 else 1 - tail


def summary(values: list[float]) -> dict:
    return {"n": len(values), "mean": statistics.fmean(values) if values else float("nan"),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def _one_sample(values: list[float], target: float) -> tuple[float, float, float]:
    """t and p for H1: mean(values) < target; (t, df, p)."""
    s = summary(values)
    if s["n"] < 2:
        return float("nan"), 0.0, float("nan")
    se = s["std"] / math.sqrt(s["n"])
    diff = target - s["mean"]
    if se == 0:
        return math.copysign(math.inf, diff) if diff else 0.0, s["n"] - 1, 0.0 if diff > 0 else 1.0
    t = diff / se
    return t, s["n"] - 1, t_sf(t, s["n"] - 1)


def readme_test(candidate: list[float], baseline: list[float], margin: float = 0.005, alpha: float = 0.01) -> dict:
    """Values in nats per token; lower is better."""
    base = statistics.fmean(baseline)
    t, df, p = _one_sample(candidate, base - margin)
    return {"policy": README_POLICY, "margin_nats": margin, "alpha": alpha, "baseline_mean": base,
            "candidate_mean": statistics.fmean(candidate), "t": t, "df": df, "p": p,
            "passed": bool(not math.isnan(p) and p < alpha)}


def welch_test(candidate: list[float], baseline: list[float], alpha: float = WELCH_ALPHA) -> dict:
    """H1: mean(candidate) < mean(baseline). With one baseline value it is a one-sample test against it."""
    c, b = summary(candidate), summary(baseline)
    if b["n"] < 2:
        t, df, p = _one_sample(candidate, b["mean"])
    else:
        vc, vb = c["std"] ** 2 / c["n"], b["std"] ** 2 / b["n"]
        diff = b["mean"] - c["mean"]
        if vc + vb == 0:
            t, df, p = (math.copysign(math.inf, diff) if diff else 0.0), float(c["n"] + b["n"] - 2), \
                (0.0 if diff > 0 else 1.0)
        else:
            t = diff / math.sqrt(vc + vb)
            df = (vc + vb) ** 2 / ((vc**2 / (c["n"] - 1) if c["n"] > 1 else 0.0) + vb**2 / (b["n"] - 1))
            p = t_sf(t, df)
    return {"policy": welch_policy(alpha), "alpha": alpha, "baseline_mean": b["mean"], "candidate_mean": c["mean"],
            "t": t, "df": df, "p": p, "passed": bool(not math.isnan(p) and p < alpha)}
