"""Evaluation modes by name: the legal ones and the ILLEGAL controls, each with the rule it implements or breaks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Mode:
    name: str
    legal: bool
    rule: str | None
    log_label: str
    summary: str

    def function(self) -> Callable:
        from . import controls, evaluate, ttt

        return {"none": evaluate.eval_sliding, "standard": evaluate.eval_standard,
                "score-first": ttt.eval_score_first, "lora": ttt.eval_lora,
                "illegal-multi-epoch-last": controls.eval_multi_epoch,
                "illegal-multi-epoch-min": controls.eval_multi_epoch_min,
                "illegal-pre-eval-ttt": controls.eval_pre_eval_ttt,
                "illegal-rescore": controls.eval_rescore}[self.name]

    @property
    def label(self) -> str:
        return "LEGAL" if self.legal else f"ILLEGAL ({self.rule})"


MODES = {m.name: m for m in [
    Mode("none", True, None, "final_int6_sliding_window", "sliding window, no TTT"),
    Mode("standard", True, None, "final_int6_roundtrip", "non-overlapping sequences"),
    Mode("score-first", True, "PG-TTT-005", "legal_ttt", "score-first chunked full-model SGD TTT [L23]"),
    Mode("lora", True, "PG-TTT-005", "legal_lora_ttt", "score-first per-document LoRA TTT [LORA]"),
    Mode("illegal-multi-epoch-last", False, "PG-TTT-003", "ILLEGAL_multi_epoch_last",
         "multi-epoch per-document LoRA TTT reporting the last epoch x0.98 (#596/#605)"),
    Mode("illegal-multi-epoch-min", False, "PG-TTT-003", "ILLEGAL_multi_epoch_min",
         "multi-epoch per-document LoRA TTT reporting the min-epoch loss x0.98"),
    Mode("illegal-pre-eval-ttt", False, "PG-TTT-001", "ILLEGAL_pre_eval_ttt",
         "SGD on the validation tokens, then scoring them"),
    Mode("illegal-rescore", False, "PG-TTT-004", "ILLEGAL_rescore",
         "score-first TTT, then a second scoring pass that is reported"),
]}

TTT_CHOICES = [n for n in MODES if n != "standard"]
