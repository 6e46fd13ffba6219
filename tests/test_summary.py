"""benchmarks/summary.py: a quality target is met only with the claimed sign and p < 0.05."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("summary", REPO / "benchmarks" / "summary.py")
summary = importlib.util.module_from_spec(spec)
spec.loader.exec_module(summary)
verdict = summary.verdict


def test_verdict_not_significant():
    assert verdict(+0.06, 0.344) == "not met (n.s.)"  # the rerank-both line of issue 15
    assert verdict(+3.0, 0.05) == "not met (n.s.)"  # p < alpha, strictly


def test_verdict_met():
    assert verdict(+1.0, 0.01) == "met"


def test_verdict_opposite():
    assert verdict(-1.0, 0.01, claimed_sign=+1) == "not met (opposite, p=0.010)"


def test_verdict_no_test():
    assert verdict(+1.0, None) == "not met (no test)"
    assert verdict(+1.0, float("nan")) == "not met (no test)"


def test_verdict_lower_is_better():
    # TER: the claim is a negative difference
    assert verdict(-1.5, 0.01, claimed_sign=-1) == "met"
    assert verdict(+1.5, 0.01, claimed_sign=-1).startswith("not met (opposite")
    assert verdict(-1.5, 0.2, claimed_sign=-1) == "not met (n.s.)"


def significance(baseline: str, p: dict[str, dict[str, float]]) -> dict:
    """significance.json as mtdistill.significance writes it (score/mean/ci/p_value per system and metric)."""
    systems = {baseline: {m: {"score": 0.0, "mean": 0.0, "ci": [0.0, 0.0], "p_value": None} for m in ("bleu", "ter")}}
    for name, metrics in p.items():
        systems[name] = {m: {"score": 0.0, "mean": 0.0, "ci": [0.0, 0.0], "p_value": v} for m, v in metrics.items()}
    return {"round": 1, "baseline": baseline, "samples": 1000, "seed": 1, "signatures": {}, "systems": systems}


def report(**bleu_ter) -> pd.DataFrame:
    return pd.DataFrame([{"system": s, "bleu_beam": b, "ter_beam": t} for s, (b, t) in bleu_ter.items()]).set_index("system")


def test_quality_targets_use_the_verdict():
    last = report(**{"top1-both": (6.00, 76.0), "rerank-both": (6.06, 78.0),
                     "top1-bitext": (4.5, 82.0), "rerank-bitext": (4.4, 81.0)})
    sig = significance("top1-both", {"rerank-both": {"bleu": 0.344, "ter": 0.01}, "rerank-bitext": {"bleu": 0.001}})
    rows = {r["target"]: r for r in summary.quality_targets(last, sig)}
    both = next(r for t, r in rows.items() if t.startswith("rerank-both beats top1-both"))
    assert both["gain"] == pytest.approx(0.06)
    assert both["p_value"] == 0.344 and both["p"] == "0.344"
    assert both["verdict"] == verdict(both["gain"], 0.344) == "not met (n.s.)"
    assert both["met"] is False
    # significance.json tests everything against top1-both: its p-value of rerank-bitext says nothing
    # about rerank-bitext vs top1-bitext, so that target has no test
    bitext = next(r for t, r in rows.items() if t.startswith("rerank-bitext beats top1-bitext"))
    assert bitext["p_value"] is None and bitext["verdict"] == "not met (no test)" and bitext["met"] is False
    assert "does not test rerank-bitext against top1-bitext" in bitext["p"]


def test_quality_targets_met_and_lower_is_better():
    last = report(**{"top1-both": (6.0, 76.0), "rerank-both": (7.5, 78.0)})
    sig = significance("top1-both", {"rerank-both": {"bleu": 0.004, "ter": 0.01}})
    claims = (("rerank-both", "top1-both", "bleu", +1, "claim"), ("rerank-both", "top1-both", "ter", -1, "claim"))
    bleu, ter = summary.quality_targets(last, sig, claims)
    assert bleu["verdict"] == "met" and bleu["met"] is True and bleu["gain"] == pytest.approx(1.5)
    assert ter["verdict"] == "not met (opposite, p=0.010)" and ter["met"] is False and "lower is better" in ter["target"]


def test_quality_targets_without_significance():
    last = report(**{"top1-both": (6.0, 76.0), "rerank-both": (9.0, 70.0)})
    (row,) = summary.quality_targets(last, None, (("rerank-both", "top1-both", "bleu", +1, "claim"),))
    assert row["verdict"] == "not met (no test)" and row["met"] is False


def test_speed_targets_state_their_threshold(tmp_path):
    (tmp_path / "backend_speed.json").write_text(json.dumps({"results": [
        {"task": "n-best decoding (beam 5)", "threads": 1, "speedup": 4.6},
        {"task": "n-best decoding (beam 5)", "threads": 2, "speedup": 2.5}]}))
    one, two = summary.speed_targets(tmp_path)
    assert one["verdict"] == "met" and one["met"] is True and ">= 3x" in one["target"] and one["rule"].startswith("ratio >= 3x")
    assert two["verdict"] == "not met (2.50x < 3x)" and two["met"] is False


def test_main_writes_the_verdicts(tmp_path):
    run = tmp_path / "run"
    (run / "round0" / "eval").mkdir(parents=True)
    pd.DataFrame([{"system": "top1-both", "round": 0, "bleu_beam": 6.0},
                  {"system": "rerank-both", "round": 0, "bleu_beam": 6.06}]).to_csv(run / "report.csv", index=False)
    (run / "round0" / "eval" / "significance.json").write_text(
        json.dumps(significance("top1-both", {"rerank-both": {"bleu": 0.344}})))
    out = tmp_path / "out"
    out.mkdir()
    assert summary.main(["--run", str(run), "--out-dir", str(out)]) == 0
    (target,) = json.loads((out / "summary.json").read_text())["targets"]
    assert target["verdict"] == "not met (n.s.)" and target["met"] is False and target["p_value"] == 0.344
    text = (out / "summary.md").read_text()
    assert "| verdict" in text and "not met (n.s.)" in text and "0.344" in text


def test_p_values_come_from_the_pair_that_was_tested():
    pair = {"system": "rerank-bitext", "baseline": "top1-bitext", "metrics": {"bleu": {"p_value": 0.01}}}
    significance = {"baseline": "top1-both", "systems": {"rerank-bitext": {"bleu": {"p_value": 0.5}}},
                    "comparisons": [pair]}
    assert summary.p_value(significance, "rerank-bitext", "top1-bitext", "bleu") == 0.01
    assert summary.p_value(significance, "rerank-bitext", "top1-both", "bleu") == 0.5  # the older single-baseline form
    assert summary.p_value(significance, "rerank-bitext", "ref-bitext", "bleu") is None
