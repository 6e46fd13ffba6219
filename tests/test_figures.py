"""The report's figures, drawn from synthetic evaluation, significance, reranker and training JSON."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mtdistill import figures

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TEACHER = {"greedy": {"bleu": 30.0, "chrf": 55.0}, "beam": {"bleu": 31.5, "chrf": 56.0}}
STUDENTS = {
    "top1-both": {"greedy": {"bleu": 25.0, "chrf": 50.0}, "beam": {"bleu": 26.0, "chrf": 51.0}},
    "rerank-both": {"greedy": {"bleu": 27.5, "chrf": 52.5}, "beam": {"bleu": 28.0, "chrf": 53.0}},
    "skd": {"greedy": {"bleu": 24.0, "chrf": 49.0}, "beam": {"bleu": 24.5, "chrf": 49.5}},
}
SIGNIFICANCE = {
    "top1-both": {"score": 26.0, "mean": 26.1, "ci": [24.0, 28.1], "p_value": None},
    "rerank-both": {"score": 28.0, "mean": 28.05, "ci": [26.2, 29.9], "p_value": 0.012},
    "skd": {"score": 24.5, "mean": 24.4, "ci": [22.5, 26.4], "p_value": 0.31},
}
FEATURES = ["teacher_sum", "teacher_per_token", "r2l_sum", "lm_per_token", "length_ratio", "from_r2l"]


def write(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


def evaluation(system: str, round_: int, scores: dict) -> dict:
    return {"system": system, "round": round_, "strategy": system.split("-")[0],
            **{d: {**scores[d], "sentences_per_s": 10.0} for d in ("greedy", "beam")}}


def diagnostics(round_: int) -> dict:
    rng = np.random.default_rng(round_)
    weights = {tuner: dict(zip(FEATURES, (rng.normal(size=len(FEATURES)) * scale).round(4).tolist()))
               for tuner, scale in (("mira", 1.0), ("pro", 0.01), ("expected", 5.0), ("random", 1.0))}
    score = {"top1": 20.0, "mira": 22.0 + round_, "pro": 21.0, "expected": 21.5, "random": 20.5, "oracle": 35.0,
             "anti-oracle": 9.0}
    rows = [{"system": s, "tune": {"bleu": v, "chrf": v + 25}, "dev": {"bleu": v - 1, "chrf": v + 24}}
            for s, v in score.items()]
    return {"labeller": "mira", "metric": "bleu", "rows": rows, "weights": weights,
            "selection": {"selected": ["teacher", "r2l"], "weights": {f: 0.5 for f in FEATURES[:3]}}}


def training(steps: list[int], best: int, bleu: bool = False, acceptance: list[float] | None = None) -> dict:
    history = [{"step": s, "train_loss": 6.0 - s / 100, "dev_loss": 5.5 - s / 120,
                **({"dev_bleu": s / 10} if bleu else {})} for s in steps]
    return {"history": history, "best_step": best, **({"acceptance_per_step": acceptance} if acceptance else {})}


@pytest.fixture
def inputs(tmp_path) -> dict[str, list[str]]:
    """A two-round run laid out as the workflow does: students and significance in round 1 only."""
    results = tmp_path / "results"
    evaluations = [write(results / f"round{r}/eval/teacher.json", evaluation("teacher", r, TEACHER)) for r in (0, 1)]
    evaluations += [write(results / f"round1/eval/{s}.json", evaluation(s, 1, scores)) for s, scores in STUDENTS.items()]
    significance = write(results / "round1/eval/significance.json", {
        "round": 1, "baseline": "top1-both", "samples": 1000, "seed": 1, "signatures": {},
        "systems": {s: {"bleu": v, "chrf": {**v, "score": v["score"] + 25}, "ter": {**v, "score": 60.0}}
                    for s, v in SIGNIFICANCE.items()}})
    diagnostic_files = [write(results / f"round{r}/reranker/diagnostics.json", diagnostics(r)) for r in (0, 1)]
    models = {
        "models/teacher": training([60, 120, 180], 120),
        "models/r2l": training([60, 100], 100),
        "round1/models/teacher": training([14], 14),
        "round1/students/top1-both": training([50, 100, 150], 100, bleu=True),
        "round1/students/rerank-both": training([50, 100, 150], 150, bleu=True),
        "round1/students/skd": training([20, 40], 40, bleu=True, acceptance=[0.2 + 0.01 * i for i in range(40)]),
    }
    for name, summary in models.items():
        write(results / name / "training.json", summary)
    (results / "models" / "imported").mkdir()  # a pretrained teacher: no training.json, no curve
    labels = [write(results / f"round1/labels/{strategy}/{s}.json", {
        "strategy": strategy, "set": s, "sentences": 20, "labels": 19, "differs_from_top1": share,
        "length_ratio": 1.1, "source_copy_rate": 0.05, "empty_rate": 0.0, "repeated_ngram_rate": 0.0,
        "filter": {"hypotheses": 200, "hypotheses_dropped": 12, "sentences": 20, "sentences_dropped": 1}})
        for strategy, s, share in (("top1", "bitext", 0.0), ("rerank", "bitext", 0.35), ("rerank", "mono", 0.4))]
    return {"evaluations": list(map(str, evaluations)), "significance": [str(significance)],
            "diagnostics": list(map(str, diagnostic_files)),
            "models": [str(results / name) for name in ["models/imported", *models]],
            "labels": list(map(str, labels))}


def argv(inputs: dict, outs: list[Path]) -> list[str]:
    return [item for key, paths in inputs.items() for item in (f"--{key}", *paths)] + ["--out", *map(str, outs)]


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR", path
    return struct.unpack(">II", data[16:24])


def plotted(inputs: dict, tmp_path: Path, names=tuple(figures.FIGURES)) -> dict[str, pd.DataFrame]:
    return figures.run(figures.parse_args(argv(inputs, [tmp_path / "figures" / f"{n}.png" for n in names])))


def test_every_figure_is_a_png_written_atomically(inputs, tmp_path):
    outdir = tmp_path / "results" / "figures"
    outs = [outdir / f"{name}.png" for name in figures.FIGURES]
    assert figures.main(argv(inputs, outs)) == 0
    for out in outs:
        width, height = png_size(out)
        assert width >= 500 and height >= 300, out
        assert out.stat().st_size > 15_000, out  # axes, bars and labels, not a blank canvas
    assert sorted(p.name for p in outdir.iterdir()) == sorted(p.name for p in outs)  # no temporary left over


def test_figures_are_deterministic(inputs, tmp_path):
    first, second = tmp_path / "a" / "bleu_ci.png", tmp_path / "b" / "training_curves.png"
    assert figures.main(argv(inputs, [first, second])) == 0
    again = [tmp_path / "c" / "bleu_ci.png", tmp_path / "c" / "training_curves.png"]
    assert figures.main(argv(inputs, again)) == 0
    assert first.read_bytes() == again[0].read_bytes() and second.read_bytes() == again[1].read_bytes()


def test_bleu_ci_plots_the_bootstrap_intervals_and_falls_back_to_plain_bars(inputs, tmp_path):
    table = plotted(inputs, tmp_path, ["bleu_ci"])["bleu_ci"]
    round1 = table[table["round"] == 1].set_index("system")
    assert list(round1.index) == list(SIGNIFICANCE)
    for system, values in SIGNIFICANCE.items():
        assert round1.loc[system, "bleu"] == values["score"]
        assert [round1.loc[system, "ci_low"], round1.loc[system, "ci_high"]] == values["ci"]
    assert round1.baseline.to_dict() == {"top1-both": True, "rerank-both": False, "skd": False}
    assert round1.loc["rerank-both", "p_value"] == 0.012
    assert set(table["round"]) == {1}  # round 0 has no students: nothing to compare

    # without a significance file: every system's beam BLEU, no interval
    table = plotted({**inputs, "significance": []}, tmp_path / "plain", ["bleu_ci"])["bleu_ci"]
    assert dict(zip(table.system, table.bleu)) == {"teacher": 31.5, **{s: v["beam"]["bleu"] for s, v in STUDENTS.items()}}
    assert table.ci_low.isna().all() and not table.baseline.any()


def test_teacher_gap_is_student_minus_teacher(inputs, tmp_path):
    table = plotted(inputs, tmp_path, ["teacher_gap"])["teacher_gap"]
    assert len(table) == len(STUDENTS) * 4
    for row in table.itertuples():
        expected = STUDENTS[row.system][row.decoding][row.metric] - TEACHER[row.decoding][row.metric]
        assert row.gap == pytest.approx(expected)
    rerank = table.set_index(["system", "metric", "decoding"]).gap
    assert rerank["rerank-both", "bleu", "beam"] == pytest.approx(-3.5)
    assert rerank["rerank-both", "chrf", "greedy"] == pytest.approx(-2.5)


def test_teacher_gap_needs_the_teacher_of_the_round(inputs, tmp_path, capsys):
    inputs["evaluations"] = [p for p in inputs["evaluations"] if "round1/eval/teacher" not in p]
    assert figures.main(argv(inputs, [tmp_path / "teacher_gap.png"])) == 2
    assert "no teacher evaluation for round 1" in capsys.readouterr().err
    assert not (tmp_path / "teacher_gap.png").exists()


def test_reranker_weights_are_scaled_per_tuner(inputs, tmp_path):
    table = plotted(inputs, tmp_path, ["reranker_weights"])["reranker_weights"]
    assert set(table["round"]) == {0, 1} and set(table.tuner) == {"mira", "pro", "expected", "random"}
    for (round_, tuner), part in table.groupby(["round", "tuner"]):
        raw = diagnostics(round_)["weights"][tuner]
        assert list(part.feature) == FEATURES
        assert list(part.weight) == [raw[f] for f in FEATURES]
        assert part.normalised.abs().max() == pytest.approx(1.0)
        np.testing.assert_allclose(part.normalised, part.weight / max(abs(w) for w in raw.values()))


def test_reranker_gap_has_every_pick_on_tune_and_dev(inputs, tmp_path):
    table = plotted(inputs, tmp_path, ["reranker_gap"])["reranker_gap"]
    assert len(table) == 2 * 4 * 2  # rounds x picks x sets
    scores = table.set_index(["round", "set", "pick"])
    assert scores.loc[(1, "tune", "reranked"), "system"] == "mira"
    assert scores.loc[(1, "tune", "reranked"), "bleu"] == 23.0
    assert scores.loc[(0, "dev", "reranked"), "bleu"] == 21.0
    assert scores.loc[(0, "dev", "top-1"), "chrf"] == 44.0
    assert scores.loc[(1, "dev", "oracle"), "bleu"] == 34.0 and scores.loc[(1, "tune", "anti-oracle"), "bleu"] == 9.0


def test_training_curves_of_teacher_helpers_and_students(inputs, tmp_path):
    table = plotted(inputs, tmp_path, ["training_curves"])["training_curves"]
    groups = table.drop_duplicates("model").set_index("model").group.to_dict()
    assert groups == {"teacher": "teacher and helpers", "r2l": "teacher and helpers",
                      "teacher (fine-tuned, round 1)": "teacher and helpers", "top1-both": "students",
                      "rerank-both": "students", "skd": "students"}  # the imported model has no curve
    teacher = table[table.model == "teacher"]
    assert list(teacher.step) == [60, 120, 180] and list(teacher.kept) == [False, True, False]
    assert teacher.dev_bleu.isna().all()
    rerank = table[table.model == "rerank-both"]
    assert list(rerank.dev_bleu) == [5.0, 10.0, 15.0] and list(rerank.dev_loss) == pytest.approx([5.5 - s / 120 for s in (50, 100, 150)])


def test_skd_acceptance_moving_average(inputs, tmp_path):
    table = plotted(inputs, tmp_path, ["skd_acceptance"])["skd_acceptance"]
    assert set(table.model) == {"skd"} and list(table.step) == list(range(1, 41))
    rates = [0.2 + 0.01 * i for i in range(40)]
    assert list(table.acceptance) == rates
    # window: a twentieth of 40 steps
    assert table.smoothed.iloc[0] == pytest.approx(rates[0])
    assert table.smoothed.iloc[10] == pytest.approx((rates[9] + rates[10]) / 2)


def test_skd_acceptance_without_an_skd_student_is_an_error(inputs, tmp_path, capsys):
    inputs["models"] = [m for m in inputs["models"] if not m.endswith("skd")]
    assert figures.main(argv(inputs, [tmp_path / "skd_acceptance.png"])) == 2
    assert "acceptance_per_step" in capsys.readouterr().err


def test_bad_inputs_name_the_file(inputs, tmp_path, capsys):
    broken = write(tmp_path / "broken" / "diagnostics.json", {k: v for k, v in diagnostics(0).items() if k != "weights"})
    assert figures.main(argv({**inputs, "diagnostics": [str(broken)]}, [tmp_path / "reranker_weights.png"])) == 2
    assert f"{broken}: missing key(s) weights" in capsys.readouterr().err
    missing = tmp_path / "nowhere.json"
    assert figures.main(argv({**inputs, "significance": [str(missing)]}, [tmp_path / "bleu_ci.png"])) == 2
    assert f"{missing}: file not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        figures.parse_args(argv(inputs, [tmp_path / "pie_chart.png"]))
    assert "unknown figure(s)" in capsys.readouterr().err


def test_every_figure_has_a_caption_titled_as_the_figure():
    from helpers import REPO

    for name, drawing in figures.FIGURES.items():
        caption = (REPO / "workflow" / "report" / f"{name}.rst").read_text(encoding="utf-8").splitlines()
        assert caption[0] == f"**{drawing.title}**" and len(" ".join(caption[2:]).split()) > 30, name


def test_report_links_the_figures_relative_to_itself():
    from mtdistill import report

    section = report.figures_section(["results/figures/bleu_ci.png", "results/figures/skd_acceptance.png"],
                                     "results/report.md")
    assert "## Figures" in section
    assert "![Test BLEU per system with 95% confidence intervals](figures/bleu_ci.png)" in section
    assert "![Speculative KD acceptance rate per step](figures/skd_acceptance.png)" in section
    assert report.figures_section([], "results/report.md") == ""
