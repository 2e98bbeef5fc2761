"""Parameter Golf's fixed facts (RULES.md §2): the byte and time budgets, where submissions live, where PRs are."""
from __future__ import annotations

from pathlib import PurePosixPath

ARTIFACT_LIMIT = 16_000_000  # decimal bytes: code + compressed model
TRAIN_LIMIT_S = 600.0  # 10 minutes of training on 8xH100
EVAL_LIMIT_S = 600.0  # 10 minutes of evaluation on 8xH100
# The wallclock cap is checked after a step and its stop is agreed across ranks: merged records stop up to 0.2 s
# past 600 s. Training is within budget up to one step plus this many seconds past the cap.
TRAIN_OVERRUN_S = 0.5
BOS_ID = 1  # the official shards start every document with it (sp1024: <s>)
RECORDS = "records"  # submissions are folders records/<track>/<name>
PR_URL = "https://github.com/openai/parameter-golf/pull/{n}"


def pr_url_for(n: int) -> str:
    return PR_URL.format(n=n)


def record_folder(path: str) -> str | None:
    """`records/<track>/<name>` for a path inside a submission folder; None for anything else."""
    parts = PurePosixPath(path).parts
    if len(parts) >= 4 and parts[0] == RECORDS:
        return "/".join(parts[:3])
    return None
