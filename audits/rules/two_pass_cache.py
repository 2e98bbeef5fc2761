"""PG-NG-003: two-pass caches that score the validation tokens again after filling a cache with them."""
from __future__ import annotations

from audits.rulekit import (
    Condition,
    Confidence,
    Invalid,
    Rule,
    Ruling,
    Severity,
    Valid,
    ordering_hits,
)


class TwoPassCache(Rule):
    """Flags a second scoring pass through a cache that the first pass filled with the same tokens.

    What it flags:
        Validation tokens scored, added to an n-gram/cache table, and later scored again through that cache
        (`pass2_results = _score_chunks_ngram(..., update_cache=False)` over chunks already scored). The finding
        sits on the second pass.

    Why it is illegal:
        On the second pass the cache holds the very tokens being scored — the eval set was "trained" into the
        cache and then re-scored (C4).

    Example:
        pass1 = score_chunks(chunks, cache, update_cache=True)
        pass2 = score_chunks(chunks[:rescore_n], cache, update_cache=False)   # overwrites pass 1

    Use instead:
        One pass: score each chunk with the cache as it stands, then update the cache with that chunk.
    """

    id = "PG-NG-003"
    name = "two-pass-cache"
    conditions = (Condition.C4,)
    uses_flows = True
    severity = Severity.ERROR
    confidence = Confidence.HIGH
    message = "Re-scores validation tokens through a cache filled with them"
    ruling = Ruling(
        "valerio-oai",
        "PR #846, #868, #869, #870, #881, #888, #893, #907; #959",
        "Two-pass submissions like these leak eval tokens, since on the second pass you're evaling tokens you've "
        "trained on in the first.",
        "maintainer ruling",
    )
    VALID = [Valid("""
        def score_chunks(model, val_tokens, ngram_counts, n):
            loss_sum = 0.0
            for ci in range(n):
                chunk = val_tokens[ci * 64:(ci + 1) * 64]
                with torch.no_grad():
                    loss_sum += mixed_nll(model, chunk, ngram_counts).item()
                ngram_counts.update(chunk)
            return loss_sum
        val_tokens = load_validation_tokens("fineweb_val_*.bin")
        print(score_chunks(model, val_tokens, ngram_counts, 8))
    """)]
    INVALID = [Invalid("""
        def score_chunks(model, val_tokens, ngram_counts, n, update_cache):
            loss_sum = 0.0
            for ci in range(n):
                chunk = val_tokens[ci * 64:(ci + 1) * 64]
                with torch.no_grad():
                    loss_sum += mixed_nll(model, chunk, ngram_counts).item()
                if update_cache:
                    ngram_counts.update(chunk)
            return loss_sum
        val_tokens = load_validation_tokens("fineweb_val_*.bin")
        pass1 = score_chunks(model, val_tokens, ngram_counts, 8, True)
        pass2 = score_chunks(model, val_tokens, ngram_counts, 4, False)
        print(f"val_loss:{pass2}")
    """, line=12)]

    def check(self, ctx):
        yield from ordering_hits(ctx, "cache_rescore", lambda o: (
            "second scoring pass over validation tokens through a cache already filled with them"))
