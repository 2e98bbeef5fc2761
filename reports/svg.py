"""Geometry for the inline-SVG pictures: the dynamic audit's event timeline and the reference-run plots.

Only numbers are computed here (rounded to 0.1 px and formatted, so pages are byte-stable); the templates draw
them, and every label goes through autoescaping there.
"""
from __future__ import annotations

import math
from typing import Any

from reports.inputs import finite

MAX_EVENTS_DRAWN = 4000
MAX_VIOLATIONS_DRAWN = 600


def fmt(x: float) -> str:
    s = f"{x:.1f}"
    return "0.0" if s == "-0.0" else s


def _int(x: Any, default: int = 0) -> int:
    if isinstance(x, bool):
        return default
    if isinstance(x, int):
        return x
    if isinstance(x, float) and math.isfinite(x):
        return int(x)
    return default


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About n round tick values covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo] if math.isfinite(lo) else []
    raw = (hi - lo) / max(n - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    out = []
    v = first
    while v <= hi + step * 1e-6 and len(out) < 50:
        out.append(round(v, 12))
        v += step
    return out


def tick_label(v: float) -> str:
    if abs(v - round(v)) < 1e-9:
        return f"{int(round(v)):,}"
    return f"{v:.4g}"


def timeline(tl: dict[str, Any]) -> dict[str, Any]:
    """SCORE and UPDATE events over token positions (x) and sequence number (y, time runs down)."""
    W, H = 960, 340
    left, right, top, bottom = 78, 18, 34, 46
    pw, ph = W - left - right, H - top - bottom
    events = [e for e in tl.get("events") or [] if isinstance(e, dict)]
    violations = [v for v in tl.get("violations") or [] if isinstance(v, dict)]
    positions = max(_int(tl.get("positions"), 0),
                    max((_int(e.get("stop")) for e in events), default=0),
                    max((_int(v.get("position")) + 1 for v in violations), default=0), 1)
    max_seq = max(_int(tl.get("max_seq"), 0),
                  max((_int(e.get("seq")) for e in events), default=0),
                  max((max(_int(v.get("score_seq")), _int(v.get("update_seq"))) for v in violations), default=0), 1)

    def x(pos: float) -> float:
        return left + pw * min(max(pos, 0), positions) / positions

    inset = 8.0  # keep marks at the first and last sequence numbers off the axes

    def y(seq: float) -> float:
        return top + inset + (ph - 2 * inset) * min(max(seq, 0), max_seq) / max_seq

    bar = max(1.5, min(9.0, ph / (max_seq + 1) * 0.8))
    drawn = events[:MAX_EVENTS_DRAWN]
    rects = []
    for e in drawn:
        kind = "update" if e.get("kind") == "update" else "score"
        start, stop, seq = _int(e.get("start")), _int(e.get("stop")), _int(e.get("seq"))
        x1, x2 = x(start), x(max(stop, start))
        rects.append({"kind": kind, "x": fmt(x1), "y": fmt(y(seq) - bar / 2), "w": fmt(max(x2 - x1, 1.0)),
                      "h": fmt(bar), "title": f"{kind.upper()} seq {seq}: positions {start:,}–{max(stop - 1, start):,}"})
    marks = []
    for v in violations[:MAX_VIOLATIONS_DRAWN]:
        pos, s_seq, u_seq = _int(v.get("position")), _int(v.get("score_seq")), _int(v.get("update_seq"))
        px = x(pos + 0.5)
        marks.append({"x": fmt(px), "y1": fmt(y(u_seq)), "y2": fmt(y(s_seq)), "ux1": fmt(px - 4), "ux2": fmt(px + 4),
                      "uy1": fmt(y(u_seq) - 4), "uy2": fmt(y(u_seq) + 4),
                      "title": f"position {pos:,}: updated at seq {u_seq}, scored later at seq {s_seq}"})
    xticks = [{"x": fmt(x(t)), "label": tick_label(t)} for t in nice_ticks(0, positions) if t <= positions]
    yticks = [{"y": fmt(y(t)), "label": tick_label(t)} for t in nice_ticks(0, max_seq) if t <= max_seq]
    return {
        "width": W, "height": H, "left": left, "top": top, "pw": pw, "ph": ph,
        "right_x": left + pw, "bottom_y": top + ph,
        "rects": rects, "marks": marks, "xticks": xticks, "yticks": yticks,
        "events_total": len(events), "events_drawn": len(drawn),
        "violations_total": len(violations), "violations_drawn": len(marks),
        "positions": positions, "max_seq": max_seq,
    }


STAGES = [("pre_quant", "pre-quant"), ("post_quant", "post-quant"), ("sliding", "sliding"), ("post_ttt", "post-TTT")]


def _stage_value(seed: dict[str, Any], key: str) -> float | None:
    st = seed.get(key)
    return finite(st.get("val_bpb")) if isinstance(st, dict) else None


def _y_range(values: list[float]) -> tuple[float, float]:
    lo, hi = min(values), max(values)
    pad = (hi - lo) * 0.08 or max(abs(hi) * 0.002, 1e-4)
    return lo - pad, hi + pad


def stage_lines(seeds: list[dict[str, Any]], stages: list[tuple[str, str]]) -> dict[str, Any] | None:
    """bpb per stage (x) for each seed (one line each), with the mean over seeds."""
    W, H = 720, 320
    left, right, top, bottom = 70, 110, 24, 44
    pw, ph = W - left - right, H - top - bottom
    values = [v for s in seeds for k, _ in stages if (v := _stage_value(s, k)) is not None]
    if not values or not stages:
        return None
    lo, hi = _y_range(values)
    n = len(stages)

    def x(i: int) -> float:
        return left + (pw * (i + 0.5) / n)

    def y(v: float) -> float:
        return top + ph * (hi - v) / (hi - lo)

    lines = []
    for si, s in enumerate(seeds):
        pts = [(x(i), y(v), v, label) for i, (k, label) in enumerate(stages) if (v := _stage_value(s, k)) is not None]
        if not pts:
            continue
        lines.append({"cls": f"s{si % 6}", "label": f"seed {s.get('seed', si)}",
                      "points": " ".join(f"{fmt(px)},{fmt(py)}" for px, py, _, _ in pts),
                      "dots": [{"x": fmt(px), "y": fmt(py), "title": f"seed {s.get('seed', si)} · {lab}: {v:.4f}"}
                               for px, py, v, lab in pts],
                      "end_x": fmt(pts[-1][0] + 10), "end_y": fmt(pts[-1][1] + 4)})
    # Keep the end-of-line labels at least a line apart.
    placed = sorted(lines, key=lambda ln: float(ln["end_y"]))
    last = -1e9
    for ln in placed:
        yv = max(float(ln["end_y"]), last + 13)
        ln["end_y"] = fmt(yv)
        last = yv
    means = []
    for i, (k, label) in enumerate(stages):
        vs = [v for s in seeds if (v := _stage_value(s, k)) is not None]
        if vs:
            m = sum(vs) / len(vs)
            means.append({"x1": fmt(x(i) - pw / n * 0.3), "x2": fmt(x(i) + pw / n * 0.3), "y": fmt(y(m)),
                          "title": f"mean {label}: {m:.4f} over {len(vs)} seed{'s' if len(vs) != 1 else ''}"})
    return {"width": W, "height": H, "left": left, "top": top, "right_x": left + pw, "bottom_y": top + ph,
            "lines": lines, "means": means,
            "xlabels": [{"x": fmt(x(i)), "label": label} for i, (_, label) in enumerate(stages)],
            "yticks": [{"y": fmt(y(t)), "label": f"{t:.4f}"} for t in nice_ticks(lo, hi) if lo <= t <= hi]}


def seed_bars(seeds: list[dict[str, Any]], stages: list[tuple[str, str]]) -> dict[str, Any] | None:
    """Grouped bars: one group per seed, one bar per stage, on a shared bpb axis starting near the minimum."""
    W, H = 720, 300
    left, right, top, bottom = 70, 20, 34, 44
    pw, ph = W - left - right, H - top - bottom
    values = [v for s in seeds for k, _ in stages if (v := _stage_value(s, k)) is not None]
    if not values or not seeds:
        return None
    lo, hi = _y_range(values)
    base = lo
    groups = len(seeds)
    gw = pw / groups
    bw = gw * 0.8 / max(len(stages), 1)

    def y(v: float) -> float:
        return top + ph * (hi - v) / (hi - base)

    bars, glabels = [], []
    for gi, s in enumerate(seeds):
        gx = left + gi * gw + gw * 0.1
        glabels.append({"x": fmt(left + gi * gw + gw / 2), "label": f"seed {s.get('seed', gi)}"})
        for bi, (k, label) in enumerate(stages):
            v = _stage_value(s, k)
            if v is None:
                continue
            bars.append({"cls": f"st{bi}", "x": fmt(gx + bi * bw), "y": fmt(y(v)), "w": fmt(bw * 0.92),
                         "h": fmt(max(top + ph - y(v), 0.5)), "title": f"seed {s.get('seed', gi)} · {label}: {v:.4f}"})
    legend = [{"cls": f"st{bi}", "label": label, "x": fmt(left + bi * 120), "tx": fmt(left + bi * 120 + 16)}
              for bi, (_, label) in enumerate(stages)]
    return {"width": W, "height": H, "left": left, "top": top, "right_x": left + pw, "bottom_y": top + ph,
            "bars": bars, "glabels": glabels, "legend": legend,
            "yticks": [{"y": fmt(y(t)), "label": f"{t:.4f}"} for t in nice_ticks(base, hi) if base <= t <= hi]}
