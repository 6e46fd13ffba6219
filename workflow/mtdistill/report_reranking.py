"""The report's reranking sections: the self-training rounds, each round's reranker and the scorers' cost."""

from __future__ import annotations

import pandas as pd

from . import reranker_diagnostics
from .training import record


def fine_tuning(training: dict) -> str:
    """What a self-training round did to the teacher: kept its predecessor, or which step won on dev."""
    if not training or not record.arguments(training).get("init"):
        return "-"
    metric = "dev_bleu" if training.get("select_by") == "bleu" else "dev_loss"
    start = record.start(training)
    best = training.get("best", {})
    if training.get("kept_start"):
        return f"kept the previous round's teacher: no checkpoint beat its {metric} {start[metric]:.2f}"
    before = f" (previous {start[metric]:.2f})" if start else ""
    return f"fine-tuned: step {training.get('best_step')} {metric} {best.get(metric, float('nan')):.2f}{before}"


def rounds_table(table: pd.DataFrame, diagnostics: list[dict], trainings: dict | None = None) -> pd.DataFrame:
    """Per self-training round: the teacher's test and dev BLEU (beam top-1), the reranker's tune/dev BLEU."""
    rows = []
    for round_, diag in enumerate(diagnostics):
        by_system = reranker_diagnostics.by_system(diag)
        teacher = table[(table.system == "teacher") & (table["round"] == round_)]
        rows.append({"round": round_, "teacher test BLEU (beam)": teacher.bleu_beam.iloc[0] if len(teacher) else None,
                     "teacher dev BLEU (beam)": by_system["top1"]["dev"]["bleu"],
                     "teacher": fine_tuning((trainings or {}).get(("teacher", round_), {})) if round_ else "trained",
                     **{f"{split} {name}": by_system[system][split]["bleu"] for split in ("tune", "dev")
                        for name, system in (("top-1", "top1"), ("reranked", diag["labeller"]), ("oracle", "oracle"))},
                     "selected scorers": ", ".join(reranker_diagnostics.selected_scorers(diag))})
    return pd.DataFrame(rows)


def rounds_section(table: pd.DataFrame, diagnostics: list[dict], trainings: dict) -> list[str]:
    """The self-training rounds side by side, then every round's reranker."""
    if not diagnostics:
        return []
    lines = ["## Self-training rounds", "",
             rounds_table(table, diagnostics, trainings).to_markdown(index=False, floatfmt=".2f"), "",
             "## Reranker (corpus BLEU and chrF of each pick on tune and dev)", ""]
    for round_, diag in enumerate(diagnostics):
        lines += reranker_section(diag, round_)
    return lines


def split_scores(rows: list[dict], key: str) -> pd.DataFrame:
    """One line per row: corpus BLEU and chrF on tune and dev."""
    return pd.DataFrame([{key: row[key], **{f"{split} {metric}": row[split][metric] for split in ("tune", "dev")
                                            for metric in ("bleu", "chrf")}} for row in rows])


def checks(diagnostics: dict) -> list[str]:
    """The independent checks, stated with their margins."""
    metric, lines = diagnostics["metric"], []
    for tuner, margin in diagnostics["checks"]["tune_minus_random"].items():
        verdict = "reaches" if margin >= -1e-9 else "falls short of"
        lines.append(f"- {tuner} {verdict} the tune-set {metric} of a random search with the same "
                     f"{diagnostics['evaluations']} evaluations ({margin:+.2f}).")
    gap = diagnostics["checks"]["dev_bleu_reranked_minus_top1"]
    verdict = "at least" if gap >= -1e-9 else f"{-gap:.2f} below"
    lines.append(f"- Reranked ({diagnostics['labeller']}) dev BLEU is {verdict} top-1 dev BLEU ({gap:+.2f}).")
    return lines


def reranker_section(diagnostics: dict, round_: int) -> list[str]:
    sets = ", ".join(f"{name} {d['sentences']} sentences / {d['hypotheses']} hypotheses" for name, d in diagnostics["sets"].items())
    lines = [f"### Round {round_}", "", f"Gain {diagnostics['metric']}; {sets}.", "",
             split_scores(diagnostics["rows"], "system").to_markdown(index=False, floatfmt=".2f"), "", *checks(diagnostics), ""]
    selection = diagnostics["selection"]
    ranking = ", ".join(f"{name} ({weight:.3f})" for name, weight in selection["ranking"])
    lines += [f"Scorers by largest absolute {diagnostics['labeller']} weight: {ranking}. "
              f"Kept {len(selection['selected'])}: **{', '.join(selection['selected'])}**; only these score the transfer sets.", ""]
    weights = pd.DataFrame(diagnostics["weights"]).rename_axis("feature").reset_index()
    selected = weights.feature.map(selection["weights"])
    weights[f"{diagnostics['labeller']} (selected)"] = selected.astype(object).where(selected.notna(), "")
    lines += ["Weights (standardised features):", "", weights.to_markdown(index=False, floatfmt=".3f"), "",
              "Each feature alone (oriented by the labelling tuner's sign):", "",
              split_scores(diagnostics["single_features"], "feature").to_markdown(index=False, floatfmt=".2f"), "",
              f"Ablation: {diagnostics['labeller']} re-tuned without one scorer:", "",
              split_scores(diagnostics["ablation"], "dropped").to_markdown(index=False, floatfmt=".2f"), ""]
    if diagnostics.get("lists"):
        lists = pd.DataFrame(diagnostics["lists"]).T.rename_axis("tune-set n-best lists").reset_index()
        lines += ["Left-to-right lists alone against the merged L2R+R2L lists:", "", lists.to_markdown(index=False, floatfmt=".2f"), ""]
    return lines


def scorer_costs(costs: list[dict]) -> pd.DataFrame:
    """Per scorer, over all its jobs: hypotheses, seconds, throughput and seconds per 1k hypotheses."""
    table = pd.DataFrame(costs).groupby(["scorer", "kind"], as_index=False)[["hypotheses", "seconds"]].sum()
    table["hypotheses_per_s"] = table.hypotheses / table.seconds
    table["seconds_per_1k"] = 1000 * table.seconds / table.hypotheses
    return table


def feature_summary(costs: list[dict]) -> pd.DataFrame:
    """Per feature column: its mean over every scored hypothesis (all sets), and its scorer's cost."""
    rows = [(c["scorer"], column, mean, c["hypotheses"]) for c in costs for column, mean in c.get("feature_means", {}).items()]
    table = pd.DataFrame(rows, columns=["scorer", "feature", "mean", "hypotheses"])
    table["weighted"] = table["mean"] * table.hypotheses
    table = table.groupby(["scorer", "feature"], sort=False, as_index=False)[["weighted", "hypotheses"]].sum()
    table["mean"] = table.weighted / table.hypotheses
    per_1k = scorer_costs(costs).set_index("scorer").seconds_per_1k
    return table.assign(seconds_per_1k=table.scorer.map(per_1k))[["scorer", "feature", "mean", "seconds_per_1k"]]


def scorers_section(costs: list[dict]) -> list[str]:
    if not costs:
        return []
    return ["## Scorers", "", "Cost over every scoring job (model loading included):", "",
            scorer_costs(costs).to_markdown(index=False, floatfmt=".2f"), "",
            "Feature means over every scored hypothesis:", "",
            feature_summary(costs).to_markdown(index=False, floatfmt=".3f"), ""]
