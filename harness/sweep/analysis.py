"""What only the sweep as a whole shows: clusters of shared violating code, lineage, submissions per week.

Every function works on the PR records in chronological order (date, then number): "first appearance" and
"descends from" both mean earlier in that order.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime, timedelta
from typing import Any

from harness.sweep.prs import PRInfo, parse_date

LINEAGE_MIN_SHARED = 3  # fewer shared functions is coincidence (or the common baseline), not descent
LINEAGE_MIN_FRACTION = 0.25  # of the descendant's own functions
LINEAGE_PROBE = 24  # a PR's rarest function fingerprints used to find candidate ancestors
LINEAGE_CANDIDATES = 12  # candidates whose exact overlap is computed


def clusters(order: list[PRInfo], records: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    """PRs grouped by violation key (rule + normalized enclosing code), largest group first."""
    members: dict[str, list[int]] = defaultdict(list)
    example: dict[str, dict[str, Any]] = {}
    for info in order:
        rec = records.get(info.number)
        if not rec:
            continue
        for v in rec.get("violations", []):
            key = v["key"]
            if not members[key] or members[key][-1] != info.number:
                members[key].append(info.number)
            example.setdefault(key, dict(v, pr=info.number))
    dates = {i.number: i.date for i in order}
    out = []
    for key, prs in members.items():
        ex = example[key]
        out.append({
            "id": key, "rule_id": ex["rule_id"], "count": len(prs), "first_pr": prs[0],
            "first_date": dates.get(prs[0], ""), "members": prs, "function": ex["function"],
            "example": {"pr": ex["pr"], "path": ex["path"], "line": ex["line"], "decoded_layer": ex["decoded_layer"],
                        "message": ex["message"], "snippet": ex["snippet"]},
        })
    out.sort(key=lambda c: (-c["count"], c["first_date"] or "9999", c["first_pr"], c["id"]))
    return out


def lineage(order: list[PRInfo], records: dict[int, dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """For each PR, the earlier PR it shares the most functions with (the later of two equally close ones).

    Candidates come from the PR's rarest fingerprints through an inverted index, so fingerprints every
    submission carries (the baseline's helpers) cost nothing; the exact overlap is computed for the best few."""
    funcs = {i.number: set(records[i.number].get("functions", [])) for i in order if i.number in records}
    df = Counter(h for fs in funcs.values() for h in fs)
    seen: dict[str, list[int]] = defaultdict(list)  # fingerprint -> earlier PRs (chronological positions)
    position = {i.number: k for k, i in enumerate(order)}
    out: dict[int, dict[str, Any]] = {}
    for info in order:
        mine = funcs.get(info.number)
        if not mine:
            continue
        probe = sorted(mine, key=lambda h: (df[h], h))[:LINEAGE_PROBE]
        votes: Counter = Counter()
        for h in probe:
            for q in seen.get(h, ()):
                votes[q] += 1
        best = None
        for q, _ in votes.most_common(LINEAGE_CANDIDATES):
            shared = len(mine & funcs[q])
            key = (shared, position[q])
            if best is None or key > best[0]:
                best = (key, q)
        if best is not None:
            shared = best[0][0]
            if shared >= LINEAGE_MIN_SHARED and shared >= LINEAGE_MIN_FRACTION * len(mine):
                out[info.number] = {"parent": best[1], "shared_functions": shared, "functions": len(mine)}
        for h in mine:
            seen[h].append(info.number)
    return out


def week_of(iso: str) -> str:
    """The Monday (YYYY-MM-DD, UTC) of the week `iso` falls in."""
    t: datetime = parse_date(iso)
    monday = (t - timedelta(days=t.weekday())).date()
    return monday.isoformat()


VERDICT_BUCKETS = ("FAIL", "WARN", "PASS", "INCOMPLETE", "ERROR")


def bucket(rec: dict[str, Any]) -> str | None:
    if rec["status"] == "error":
        return "ERROR"
    if rec["status"] != "audited":
        return None
    if rec.get("incomplete") and rec.get("verdict") == "PASS":
        return "INCOMPLETE"
    return rec.get("verdict", "PASS")


def timeline(order: list[PRInfo], records: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    """Audited submissions per week and verdict, every week from the first to the last present."""
    counts: dict[str, Counter] = defaultdict(Counter)
    for info in order:
        rec = records.get(info.number)
        b = bucket(rec) if rec else None
        if b is None or not info.date:
            continue
        counts[week_of(info.date)][b] += 1
    if not counts:
        return []
    weeks = sorted(counts)
    out = []
    day = datetime.fromisoformat(weeks[0])
    last = datetime.fromisoformat(weeks[-1])
    while day <= last:
        w = day.date().isoformat()
        out.append({"week": w, **{b: counts[w][b] for b in VERDICT_BUCKETS}})
        day += timedelta(days=7)
    return out
