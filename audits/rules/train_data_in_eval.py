"""PG-DATA-004: reading training data during evaluation."""
from __future__ import annotations

from audits.rulekit import (
    CACHE_UPDATE,
    TRAIN,
    TRAIN_READ,
    Condition,
    Confidence,
    Hit,
    Invalid,
    Rule,
    Ruling,
    Severity,
    Valid,
    merge_related,
    scoring_roots,
    trail,
)


class TrainDataInEval(Rule):
    """Flags a read of training data from code that runs during evaluation.

    What it flags:
        Inside an evaluation function (one that accumulates the validation score) or anything it calls: a read
        of training shards or the training loader (`fineweb_train_*`, `train_loader.next_batch`), for example to
        pre-fill an n-gram cache.

    Why it is illegal:
        Evaluation may use only the artifact and the already-scored prefix. Training statistics are allowed
        only when they are paid for inside the 16,000,000-byte artifact.

    Example:
        def eval_val_ngram(model, val_tokens):
            cache.update(load_data_shard("fineweb_train_000001.bin"))   # at eval time

    Use instead:
        Build the statistics during training and store them in the artifact (they count against 16 MB).
    """

    id = "PG-DATA-004"
    name = "train-data-in-eval"
    conditions = (Condition.DATA,)
    uses_flows = True
    severity = Severity.ERROR
    confidence = Confidence.MEDIUM
    message = "Reads training data during evaluation"
    ruling = Ruling(
        "README FAQ (organizers)",
        "openai/parameter-golf README",
        "you aren't allowed to access any training data during evaluation, unless you pay for those bits in the "
        "<16MB limit.",
        "maintainer ruling",
    )
    VALID = [Valid("""
        def eval_val(model, val_tokens):
            loss_sum = 0.0
            with torch.no_grad():
                loss_sum += model(val_tokens[:-1], val_tokens[1:]).item()
            return loss_sum
        val_tokens = load_validation_tokens("fineweb_val_*.bin")
        print(eval_val(model, val_tokens))
    """)]
    INVALID = [Invalid("""
        def eval_val(model, val_tokens, ngram_counts):
            loss_sum = 0.0
            train_tokens = load_data_shard("fineweb_train_000001.bin")
            ngram_counts.update(train_tokens)
            with torch.no_grad():
                loss_sum += model(val_tokens[:-1], val_tokens[1:]).item()
            return loss_sum
        val_tokens = load_validation_tokens("fineweb_val_*.bin")
        print(eval_val(model, val_tokens, ngram_counts))
    """, line=3)]

    def check(self, ctx):
        evals = scoring_roots(ctx)
        for flow in ctx.flows:
            for o in flow.occs:
                if o.kind in (TRAIN_READ, CACHE_UPDATE) and TRAIN in o.taint and any(q in evals for q in o.chain):
                    if o.kind == CACHE_UPDATE and any(
                            p.kind == TRAIN_READ and p.chain == o.chain and p.order < o.order for p in flow.occs):
                        continue  # the read itself is already reported
                    where = next((line for _sid, _i, line, q in o.path if q in evals), o.line)
                    own = [(o.line, "the read happens here")] if where != o.line else []
                    yield Hit(None, "reads training data inside evaluation", line=where,
                              related=merge_related(own, trail(ctx.prog, o, TRAIN)))
