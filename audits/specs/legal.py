"""Legal patterns the rule docs point to: what the static rules deliberately do not flag, with the ruling."""
from __future__ import annotations

from audits.spec import Spec
from audits.types import Condition, Confidence, Ruling, Severity


def specs() -> list[Spec]:
    return [
        Spec("PG-TTT-005", "score-first-ttt", "legal", (Condition.C3, Condition.C4), Severity.INFO, Confidence.HIGH,
             Ruling("valerio-oai", "PR #549 (merged); also #473, #589", "Looks legal, clears the 0.005 nats test, "
                    "so merging into the leaderboard.", "maintainer ruling"),
             "Score-first chunked or per-document TTT (legal)", """
            Score-first test-time training: each chunk (or document) is scored before the model trains on it.

            What it is:
                An evaluation loop that scores chunk i under no_grad/inference_mode, adds it to the reported sums,
                and only then trains on chunk i (never on the last chunk); per-document adapters reset between
                documents. Several epochs on an already-scored chunk are allowed (the merged #549).
            Why it is legal:
                Every token is scored by a state that has not seen it, once (C3, C4).
            Example:
                for ci in range(num_chunks):
                    with torch.inference_mode():
                        loss_sum += score(chunk[ci])
                    if ci < num_chunks - 1:
                        train_on(chunk[ci])
            What is flagged instead:
                Training before scoring (PG-TTT-001), reporting a later epoch (PG-TTT-003), re-scoring after
                training (PG-TTT-004).
            """),
        Spec("PG-NG-005", "causal-ngram-tilt", "legal", (Condition.C1, Condition.C2), Severity.INFO,
             Confidence.HIGH,
             Ruling("cocohearts (Alex Zhao); valerio-oai", "merged PR #1514, #2135; PR #674",
                    "token-only n-gram gates (within_gate=0 word_gate=0 agree2plus=0)", "maintainer ruling"),
             "Causal, prefix-only n-gram tilt or cache, updated after scoring and normalized (legal)", """
            A causal n-gram cache or tilt: built only from tokens already scored, mixed as a full distribution and
            renormalized before the target's probability is read.

            What it is:
                Counts keyed by the prefix (never the target), updated after each position is scored, combined
                with the model's softmax over the whole vocabulary and normalized; precompute time counts inside
                the evaluation budget.
            Why it is legal:
                The distribution at t depends only on the artifact and the prefix, and it sums to one (C1, C2).
            Example:
                p = normalize(lm_probs + beta * ngram_probs(prefix)); loss += -log(p[target]); update(prefix, target)
            What is flagged instead:
                Target-keyed caches and gold-token-only mixing (PG-NG-001), gates on the target's class (PG-NG-004),
                two-pass caches (PG-NG-003).
            """),
    ]
