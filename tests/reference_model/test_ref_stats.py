"""Student-t tails, both significance policies, and the log grammar."""

import math

import pytest

from reference_model import runlog, stats


@pytest.mark.parametrize("t, df, p", [(6.965, 2, 0.01), (2.920, 2, 0.05), (1.0, 1, 0.25), (2.0, 30, 0.02731),
                                      (0.0, 5, 0.5), (-1.0, 1, 0.75), (2.576, 1e6, 0.005)])
def test_t_tail(t, df, p):
    assert stats.t_sf(t, df) == pytest.approx(p, rel=2e-3)


def test_readme_policy_needs_the_margin():
    base = [2.000]
    assert stats.readme_test([1.990, 1.991, 1.989], base)["passed"]
    close = stats.readme_test([1.997, 1.996, 1.998], base)  # better, but by less than 0.005 nats
    assert not close["passed"] and close["p"] > 0.5
    assert "0.005 nats" in close["policy"] and "p < 0.01" in close["policy"]


def test_welch_policy():
    res = stats.welch_test([1.100, 1.101, 1.099], [1.120, 1.122, 1.121])
    assert res["passed"] and res["df"] == pytest.approx(4.0) and "Welch" in res["policy"]
    assert not stats.welch_test([1.12, 1.13, 1.11], [1.12, 1.121, 1.119])["passed"]
    single = stats.welch_test([1.100, 1.101, 1.099], [1.2])
    assert single["df"] == 2 and single["passed"]
    assert stats.summary([1.0, 2.0, 3.0]) == {"n": 3, "mean": 2.0, "std": 1.0}


def test_log_grammar_round_trips():
    line = runlog.val_line(120, 200, 4.41559, 2.39081, 65410.4, 120)
    assert line == "step:120/200 val_loss:4.4156 val_bpb:2.3908 train_time:65410ms step_avg:545.09ms"
    parsed = runlog.parse_line(line)
    assert parsed["step"] == "120/200" and parsed["val_bpb"] == 2.3908 and parsed["train_time"] == 65410
    rounded, exact = runlog.eval_lines("final_int6_sliding_window", {"val_loss": 4.4, "val_bpb": 2.39}, 6682.0,
                                       "stride:32")
    assert rounded.startswith("final_int6_sliding_window val_loss:4.4000 val_bpb:2.3900 stride:32 eval_time:")
    assert runlog.parse_line(exact) == {"label": "final_int6_sliding_window_exact", "val_loss": 4.4,
                                        "val_bpb": 2.39}
    assert math.isclose(runlog.parse_line(runlog.train_line(3, 9, 6.5, 30.0, 3))["step_avg"], 10.0)
