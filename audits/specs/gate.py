"""What each check of the CI gate (harness/gate/checks.py) reports under its own id.

Gate messages under a static rule's id (PG-BPB-001, PG-NG-004, every legality finding) are that rule's; these are
the ids only the gate prints."""
from __future__ import annotations

from audits.spec import Spec
from audits.types import Condition, Confidence, Ruling, Severity

README = "openai/parameter-golf README"


def _spec(id: str, name: str, conds: tuple[Condition, ...], severity: Severity, ruling: Ruling, message: str,
          text: str) -> Spec:
    return Spec(id, name, "gate", conds, severity, Confidence.HIGH, ruling, message, text)


def specs() -> list[Spec]:
    return [
        _spec("PG-FMT", "SubmissionFormat", (), Severity.ERROR,
              Ruling("README (organizers); maintainers on #1031, #1120", f"{README}; PR #1031, #1120",
                     "A record PR adds one new folder under records/<track>/ with README.md, submission.json, "
                     "train_gpt.py and the train logs.", "maintainer ruling"),
              "A record PR adds one folder with README.md, submission.json, train_gpt.py and logs", """
            A record PR adds one folder with README.md, submission.json, train_gpt.py and logs.

            What it flags:
                A missing file, a submission.json that does not validate against the documented schema, an unknown
                track, a symlink or submodule, or a change outside the submission's own folder.
            Why it is illegal:
                Reviewers and the leaderboard read these files; a record PR changes nothing else.
            Example:
                A PR that adds the folder and also edits the repository's root train_gpt.py.
            Use instead:
                Put everything the run needs in the one folder under records/<track>/.
            """),
        _spec("PG-LOG", "TrainLogs", (), Severity.ERROR,
              Ruling("maintainers", "PR #86", "Logs must come from the submitted script and match the claimed "
                     "score where the score is in doubt.", "maintainer ruling"),
              "Train logs belong to the submitted script and agree with submission.json", """
            Train logs belong to the submitted script and agree with submission.json.

            What it flags:
                A log that does not parse in the official grammar, whose code size, hash or source differs from the
                submitted train_gpt.py, or whose reported stage disagrees with submission.json.
            Why it is illegal:
                A score is only as good as the log of the run that produced it (stale logs, #86).
            Example:
                Logs of an earlier version of the script next to an edited train_gpt.py.
            Use instead:
                Re-run the submitted script and commit its own logs.
            """),
        _spec("PG-SIZE-001", "ArtifactSize", (), Severity.ERROR,
              Ruling("README FAQ (organizers)", README, "Artifact = code bytes + compressed model bytes "
                     "<= 16,000,000 (decimal); all counted code lives in train_gpt.py (#1959).", "maintainer ruling"),
              "Artifact = code bytes + compressed model bytes <= 16,000,000", """
            Artifact = code bytes + compressed model bytes <= 16,000,000, for every seed.

            What it flags:
                A seed whose logged or submitted artifact exceeds 16,000,000 decimal bytes.
            Why it is illegal:
                The competition caps the artifact in decimal bytes, not MiB.
            Example:
                A 15.9 MiB artifact (16.7 million bytes).
            Use instead:
                Compress further or shrink the model until every seed fits.
            """),
        _spec("PG-TIME-TRAIN", "TrainingTime", (Condition.CAL,), Severity.ERROR,
              Ruling("valerio-oai", "PR #609", "I would not regard 'artifact creation' as untimed.",
                     "maintainer ruling"),
              "Training <= 600 s including calibration and artifact production", """
            Training takes at most 600 s on 8xH100, calibration that reads training data included.

            What it flags:
                A log whose training time (plus calibration, and artifact production when configured) exceeds the
                cap by more than one step.
            Why it is illegal:
                GPTQ/Hessian calibration and artifact creation count toward the training budget (#609).
            Example:
                600 s of training followed by 90 s of Hessian collection on training batches.
            Use instead:
                Stop training early enough for calibration to fit inside the 600 s.
            """),
        _spec("PG-TIME-EVAL", "EvaluationTime", (), Severity.ERROR,
              Ruling("maintainers", "PR #529, #1972", "The evaluation budget includes test-time training, n-gram "
                     "precompute and SLOT.", "maintainer ruling"),
              "Evaluation <= 600 s including TTT and precompute", """
            Evaluation takes at most 600 s on 8xH100, test-time training and precompute included.

            What it flags:
                A log whose evaluation phases add up to more than 600 s on a timed track.
            Why it is illegal:
                TTT, n-gram precompute and SLOT run inside the evaluation budget (#529, #1972).
            Example:
                Sliding-window evaluation of 400 s after 300 s of TTT.
            Use instead:
                Budget every evaluation phase inside the 600 s.
            """),
        _spec("PG-STAT-001", "Significance", (), Severity.ERROR,
              Ruling("README (organizers); leaderboard audit", f"{README}; PR #1902", ">= 0.005 nats at p < 0.01 "
                     "over at least 3 seeds; later practice: a one-sided Welch t-test.", "maintainer ruling"),
              "At least 3 seeds of the same config beat the record significantly", """
            At least 3 seeds of the same config beat the record significantly.

            What it flags:
                Fewer than 3 seeds, seeds of different configs, or a gain below the README's margin or the Welch
                test's significance (waived for systems-only changes).
            Why it is illegal:
                A record must beat the previous one by more than seed noise.
            Example:
                One lucky seed 0.002 nats below the record.
            Use instead:
                Run three or more seeds of one config and report them all.
            """),
        _spec("PG-CHRONO", "Chronology", (), Severity.WARNING,
              Ruling("maintainers", "PR #2146", "Leaderboard cutoff 2026-05-02T00:00Z; later only "
                     "compliance-restoring fixes count.", "maintainer ruling"),
              "Records count in PR order up to the cutoff", """
            Records count in PR order up to the leaderboard cutoff.

            What it flags:
                A record dated after the cutoff (WARN).
            Why it is illegal:
                After the cutoff only fixes that restore compliance count.
            Example:
                A new record folder dated 2026-05-10.
            Use instead:
                Submit a compliance fix, or a non-record entry.
            """),
        _spec("PG-AUDIT", "AuditCoverage", (), Severity.ERROR,
              Ruling("scorefirst policy", "docs/gate.md", "A file the static audit cannot read or parse leaves the "
                     "legality verdict incomplete.", "scorefirst policy"),
              "Every Python file of the submission can be audited", """
            Every Python file of the submission can be audited.

            What it flags:
                A file that is not valid Python, not text, too large or a symlink (the submission cannot be audited
                as submitted), or an audit that failed.
            Why it is illegal:
                A legality verdict must cover all the code that runs.
            Example:
                A train_gpt.py with a syntax error.
            Use instead:
                Submit code that parses as Python 3.12.
            """),
        _spec("PG-DYNAMIC", "DynamicAudit", (Condition.C1, Condition.C2, Condition.C3, Condition.C4),
              Severity.ERROR,
              Ruling("scorefirst policy", "docs/dynamic_audit.md", "A disagreement between the static and the "
                     "dynamic audit is surfaced for a person, never resolved silently.", "scorefirst policy"),
              "The dynamic audit's failed checks and disagreements", """
            With --dynamic: a check or probe of the dynamic audit that failed or warns, and every condition on which
            the static and dynamic verdicts disagree.

            What it flags:
                Each dynamic check that is not PASS (as error or warning), and each disagreement (warning).
            Why it is illegal:
                The run itself showed the violation; a disagreement means one of the audits is wrong about it.
            Example:
                The ledger shows positions trained on before they were scored.
            Use instead:
                See the dynamic check's own entry (`scorefirst rules score-before-update`, ...).
            """),
    ]
