"""The report's evidence sections drawn from hand-made step outputs: labels, SKD acceptance, self-training."""

from __future__ import annotations

import pandas as pd
import pytest

from mtdistill import figures, report, report_reranking, report_sections


def label_diagnostics(strategy: str, set_name: str, differs: float, dropped: int) -> dict:
    return {"strategy": strategy, "set": set_name, "round": 1, "sentences": 10, "labels": 10 - dropped,
            "differs_from_top1": differs, "length_ratio": 1.1, "source_copy_rate": 0.0, "empty_rate": 0.0,
            "repeated_ngram_rate": 0.0, "char_run_rate": 0.0,
            "filter": {"thresholds": {"max_ngram": 4}, "hypotheses": 50, "hypotheses_dropped": 5,
                       "dropped_by_reason": {"repeated_ngram": 3, "char_run": 2}, "sentences": 10,
                       "sentences_dropped": dropped, "dropped_sent_ids": ["a"] * dropped}}


LABELS = [label_diagnostics("top1", "bitext", 0.0, 1), label_diagnostics("rerank", "bitext", 0.4, 1),
          label_diagnostics("rerank", "mono", 0.5, 2)]


def test_labels_section_lists_every_strategy_and_set_with_the_filter_counts():
    text = "\n".join(report_sections.labels_section(LABELS))
    rows = [line for line in text.splitlines() if line.startswith("|") and "rerank" in line]
    assert len(rows) == 2 and "| mono " in rows[1]
    header = next(line for line in text.splitlines() if line.count("|") > 2 and line.split("|")[1].strip() == "round")
    assert "filter sentences_dropped" in header and "filter dropped_by_reason repeated_ngram" in header
    assert "thresholds" not in header and "dropped_sent_ids" not in header  # config values and ids stay in the JSON
    assert report_sections.labels_section([]) == []


def test_label_diagnostics_figure_plots_the_shares(tmp_path):
    table = figures.labels.label_diagnostics(LABELS, tmp_path / "label_diagnostics.png")
    assert (tmp_path / "label_diagnostics.png").stat().st_size > 0
    rerank_mono = table.set_index("labels").loc["rerank-mono (round 1)"]
    assert rerank_mono.differs_from_top1 == 0.5 and rerank_mono.dropped == pytest.approx(0.2)
    assert rerank_mono.hypotheses_dropped == pytest.approx(0.1)


def test_acceptance_section_shows_the_sweep_and_the_chosen_k():
    sweep = {"student": "results/round1/students/top1-bitext", "sentences": 64, "gamma": 5, "chosen_k": 3,
             "choice": "closest to 0.55", "sweep": [{"k": 1, "acceptance": 0.21}, {"k": 3, "acceptance": 0.52},
                                                    {"k": 25, "acceptance": 0.99}]}
    text = "\n".join(report_sections.acceptance_section([sweep]))
    assert "## Speculative KD: acceptance against K" in text and "Chosen K: 3" in text and "0.520" in text


def test_self_training_round_says_whether_it_kept_its_predecessor():
    kept = {"arguments": {"init": "results/models/teacher"}, "select_by": "bleu", "kept_start": True, "best_step": 0,
            "history": [{"step": 0, "dev_bleu": 14.2, "dev_loss": 3.1}, {"step": 50, "dev_bleu": 13.9, "dev_loss": 3.2}],
            "best": {"step": 0, "dev_bleu": 14.2}}
    assert report_reranking.fine_tuning(kept) == "kept the previous round's teacher: no checkpoint beat its dev_bleu 14.20"
    improved = {**kept, "kept_start": False, "best_step": 50, "best": {"step": 50, "dev_bleu": 14.9}}
    assert report_reranking.fine_tuning(improved) == "fine-tuned: step 50 dev_bleu 14.90 (previous 14.20)"
    assert report_reranking.fine_tuning({}) == "-"


def test_initialisation_column_names_how_each_model_started():
    assert report.initialisation("x", {"arguments": {"init": None, "init_from_teacher": None}}) == "scratch"
    assert report.initialisation("x", {"arguments": {"init_from_teacher": "t", "init_layers": "spaced"}}) == \
        "teacher spaced layers"
    assert report.initialisation("skd", {"arguments": {"init": "results/round1/students/top1-bitext"}}) == \
        "from top1-bitext"
    assert report.initialisation("teacher", {}) == "-"
    table = report_sections.seed_section(pd.DataFrame({"system": ["a-bitext"], "seed": [1], "bleu_beam": [1.0],
                                                       "chrf_beam": [2.0]}))
    assert table == []  # no replicas, no section
