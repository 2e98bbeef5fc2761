"""What each check and probe of the dynamic audit (harness/checks.py, harness/probes.py, harness/dynamic.py) judges.

The ids are the `Check.id` / `Probe.name` the ledger checks print; each cites the ruling of the static rule whose
condition it proves on a run (`RULING_OF`), or scorefirst's own policy where the run itself is the evidence."""
from __future__ import annotations

from audits.spec import Spec
from audits.types import Condition, Confidence, Ruling, Severity

C1, C2, C3, C4, DATA, BYTES = (Condition.C1, Condition.C2, Condition.C3, Condition.C4, Condition.DATA,
                               Condition.BYTES)
E, W = Severity.ERROR, Severity.WARNING


def _ruling(rule_id: str) -> Ruling:
    from audits.registry import rule_by_id

    return rule_by_id(rule_id).ruling


def _spec(id: str, name: str, conds: tuple[Condition, ...], severity: Severity, cites: str, message: str,
          text: str) -> Spec:
    return Spec(id, name, "dynamic", conds, severity, Confidence.HIGH, _ruling(cites), message, text)


def specs() -> list[Spec]:
    return [
        _spec("ledger-complete", "ledger-complete", (DATA,), W, "SF-TAMPER-001", "The run closed its ledger", """
            The run closed its ledger: every score and update it made was recorded.

            What it flags:
                A run that stopped (killed, crashed) before the tracer closed the ledger: the other checks cover
                only the events flushed before that (WARN).
            Why it is illegal:
                Evidence of part of a run cannot prove the whole evaluation legal.
            Example:
                The script exceeds the wall-time limit in the middle of its evaluation loop.
            Use instead:
                Audit with a smaller --val-tokens or a longer --timeout so the evaluation finishes.
            """),
        _spec("scored-once", "scored-once", (C4,), E, "PG-TTT-004", "Every position is scored exactly once", """
            Every validation position is scored exactly once (C4: a single left-to-right pass).

            What it flags:
                Positions the ledger shows scored more than once, with the first such position and its score seqs.
            Why it is illegal:
                Scoring a token again (after adapting, or in a second pass) lets the reported score pick the better
                of several looks at the same target.
            Example:
                Evaluate, train on the validation tokens, evaluate again and report the second score.
            Use instead:
                Score each token once, before anything trains on it (PG-TTT-005).
            """),
        _spec("scored-count", "scored-count", (C4,), E, "PG-DATA-005", "As many positions scored as targets", """
            The number of scored positions equals the number of validation targets (N+1 tokens give N targets).

            What it flags:
                A run that scores fewer or more positions than the split has, with the first position that differs.
            Why it is illegal:
                The score must cover the whole fixed validation split, each target once.
            Example:
                Scoring only whole windows of the sequence length and dropping the shorter tail.
            Use instead:
                Score every target of the split; pad the last window instead of dropping it.
            """),
        _spec("coverage", "coverage", (DATA,), E, "PG-DATA-005", "The whole validation split is scored", """
            The whole validation split is scored, and nothing outside it.

            What it flags:
                Targets never scored or scored positions outside the split (FAIL); updates that read positions
                never scored (WARN).
            Why it is illegal:
                A subset of the validation split is not the competition's score.
            Example:
                Evaluating a random subset of the validation batches.
            Use instead:
                Score every target of the fixed split.
            """),
        _spec("score-before-update", "score-before-update", (C3,), E, "PG-TTT-001",
              "No position is trained on before it is scored", """
            No validation position is read by a parameter update before its first score (C3).

            What it flags:
                The first position an update read before it was scored, with the update's and the score's seqs.
            Why it is illegal:
                The state that scores a token must not have been trained on that token.
            Example:
                Fine-tuning on the validation tokens, then evaluating them.
            Use instead:
                Score a chunk first, then train on it (PG-TTT-005).
            """),
        _spec("warmup-restored", "warmup-restored", (C3,), W, "PG-TTT-006",
              "A warm-up on validation tokens was reverted before scoring", """
            Updates read validation positions before their score, but a restore reverted every parameter they
            changed, with no optimizer state carried on, before the positions were scored.

            What it flags:
                A compile or warm-up pass on validation tokens whose effect was undone (WARN, gray: PG-TTT-006).
            Why it is illegal:
                Accepted when weights and optimizer state are reset; a person should confirm nothing leaks.
            Example:
                Two warm-up optimizer steps on a validation batch, then `load_state_dict` of the saved weights.
            Use instead:
                Warm up on synthetic or training tokens.
            """),
        _spec("reported-loss", "reported-loss", (C4,), E, "PG-TTT-004",
              "The reported val_loss is the first-pass score", """
            The reported val_loss equals the mean of each position's first score (or first prediction, traced).

            What it flags:
                A reported loss that differs from the first-pass loss beyond the tolerance (FAIL when positions were
                scored again after training on them, WARN when the gap is charged to C2 or nothing can be compared).
            Why it is illegal:
                A reported score that is not the first pass is a re-score after adaptation or a best-of.
            Example:
                Reporting the last epoch's loss of a multi-epoch TTT.
            Use instead:
                Report the loss accumulated while scoring, once per token.
            """),
        _spec("reported-bpb", "reported-bpb", (BYTES,), E, "PG-BPB-001",
              "The reported val_bpb uses the canonical byte count", """
            The bytes implied by the reported (val_loss, val_bpb) pair match the canonical byte table.

            What it flags:
                A reported val_bpb whose implied byte count differs from the split's bytes beyond the tolerance.
            Why it is illegal:
                A wrong denominator changes the score without changing the model.
            Example:
                Counting byte-fallback tokens as three bytes.
            Use instead:
                Count the bytes of the raw validation text.
            """),
        _spec("repeated-targets", "repeated-targets", (DATA,), W, "PG-DATA-005",
              "The reported mean counts every target once", """
            The reported mean counts each validation target once: a sliding-window scorer whose last windows run past
            the split's end and predict its last targets again is recognised, and those repeats are counted in the
            reported-loss and reported-bpb comparisons instead of being read as a re-score.

            What it flags:
                Targets predicted more than once, each time from the state that first scored them, whose repeats
                the reported mean includes (WARN: nothing leaks, C3 and C4 are unaffected, but the score is not the
                canonical once-per-target mean; the message gives the bpb as counted and with every target once).
            Why it is illegal:
                The score is the mean over the whole split with every target counted once; counting some twice
                weights the split differently from everyone else's score.
            Example:
                `for s in range(0, total, stride)` with windows starting at `max(wlen - stride, 0)` past the end,
                as in several record scripts.
            Use instead:
                Stop the windows at the split's end, or score only the targets no earlier window scored.
            """),
        _spec("reported-from-trained-state", "reported-from-trained-state", (C3,), E, "PG-TTT-001",
              "The reported score is not computed by a state trained on its tokens", """
            Traced runs: the computations the reported score sums were not made by a state trained on their
            tokens.

            What it flags:
                A reported score that matches predictions made after training on the same positions.
            Why it is illegal:
                Score-after-adapt on validation data violates C3 whatever the first pass looked like.
            Example:
                Scoring once for show, training on the tokens, and reporting the second computation.
            Use instead:
                Report the first computation of each position.
            """),
        _spec("observed-distributions", "observed-distributions", (C2,), E, "PG-NG-001",
              "The scored distributions are full and normalized", """
            Traced runs: the distributions the score reads are full, normalized distributions over the vocabulary.

            What it flags:
                A reported loss that no normalized distribution the run computed explains (FAIL), or one the trace
                cannot see (WARN).
            Why it is illegal:
                Scoring only the gold token's probability, without normalizing, lets the target choose its score.
            Example:
                Mixing a hashed n-gram count keyed on the target into the gold token's probability.
            Use instead:
                Mix full distributions and renormalize before reading the target (PG-NG-005).
            """),
        _spec("ambiguous-provenance", "ambiguous-provenance", (C3,), W, "PG-TTT-001",
              "Updates read tokens whose split cannot be told", """
            Updates read, before their first score, positions whose token ids lost their origin and whose text
            occurs in both splits.

            What it flags:
                Reads the trace cannot attribute to the validation or the training split (WARN; not a C3 violation).
            Why it is illegal:
                Training on validation tokens is; training on the same text from the training shards is not.
            Example:
                A data loader that copies token ids through Python lists before training on them.
            Use instead:
                Read shards through numpy or torch so their origin stays visible; the static audit decides.
            """),
        _spec("run-completed", "run-completed", (DATA,), E, "SF-TAMPER-001", "The traced run completed", """
            The traced run exited normally after scoring.

            What it flags:
                A run that failed or was killed: its ledger cannot back the score it printed.
            Why it is illegal:
                Evidence of a run that did not finish proves nothing about the submitted score.
            Example:
                A script that calls os._exit(3) after printing its score.
            Use instead:
                Let the run end normally.
            """),
        _spec("contained-writes", "contained-writes", (DATA,), W, "SF-TAMPER-001",
              "No writes outside the work directory", """
            The run wrote nothing outside its work directory.

            What it flags:
                Writes the sandbox refused outside the work directory (WARN: a person should look).
            Why it is illegal:
                Evaluation reads only the artifact; writes elsewhere can stage data for another run or hide state.
            Example:
                Caching adapted weights in the home folder.
            Use instead:
                Keep every file inside the work directory.
            """),
        _spec("trace-files", "trace-files", (DATA,), E, "SF-TAMPER-001", "The trace holds only what the tracer wrote", """
            The run's trace folder holds only what the tracer writes.

            What it flags:
                Trace files the harness refuses to read (links, FIFOs, oversized or planted files).
            Why it is illegal:
                A planted trace could make an illegal run look legal.
            Example:
                The script writes its own ledger files into the trace folder.
            Use instead:
                Leave the trace folder to the tracer.
            """),
        _spec("instrumentation", "instrumentation", (C1, C2, C3, C4), E, "SF-TAMPER-001",
              "The instrumentation was not disturbed", """
            The tracer's instrumentation stayed in place for the whole run.

            What it flags:
                Tamper events from the tracer, or a run that ended without the tracer closing its ledger: one FAIL
                per condition, since nothing the trace shows can be trusted.
            Why it is illegal:
                A run that blinds the tracer could hide any violation.
            Example:
                Clearing torch's function-mode stack before the evaluation loop.
            Use instead:
                Leave torch's hooks and the tracer alone.
            """),
        _spec("guard-log", "guard-log", (DATA,), E, "PG-NET", "The guard's record can be trusted", """
            The network and write guard reported its start and its channel shows no tampering.

            What it flags:
                A run whose guard never started or whose record was tampered with.
            Why it is illegal:
                Without the guard's record, "no network attempt" proves nothing.
            Example:
                Closing the guard's channel file descriptor at start-up.
            Use instead:
                Leave the guard's file descriptors alone.
            """),
        _spec("future-perturbation", "future-perturbation", (C1,), E, "PG-ATTN-001",
              "Changing future tokens does not change earlier predictions", """
            Probe: a second run with the validation tokens after a cut perturbed gives the same predictions before
            the cut (C1).

            What it flags:
                Predictions before the cut that change when only later tokens change (FAIL); a probe that could not
                be placed or run (WARN).
            Why it is illegal:
                The prediction at position t may depend only on the artifact and the tokens before t.
            Example:
                Bidirectional attention at evaluation time.
            Use instead:
                Keep attention and caches causal.
            """),
        _spec("normalization", "normalization", (C2,), E, "PG-NG-001",
              "Scored distributions sum to one over the vocabulary", """
            Probe: the distributions at sampled scored positions sum to one over the whole vocabulary (C2).

            What it flags:
                Sampled distributions whose total probability differs from one beyond the tolerance.
            Why it is illegal:
                An unnormalized score can make every target look likely.
            Example:
                Adding an n-gram count to the gold token's logit only.
            Use instead:
                Renormalize the mixed distribution before reading the target.
            """),
    ]
