"""Collect every system's evaluation into `report.csv` and a Markdown `report.md`."""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from .files import atomic_path, read_json, run_main


def report_table(evaluations: list[dict], trainings: dict[str, dict]) -> pd.DataFrame:
    rows = []
    for ev in evaluations:
        training = trainings.get(ev["system"], {})
        rows.append({
            "system": ev["system"], "strategy": ev["strategy"], "parameters": ev["parameters"],
            "train_pairs": training.get("train_pairs"),
            "bleu_greedy": ev["greedy"]["bleu"], "bleu_beam": ev["beam"]["bleu"],
            "chrf_greedy": ev["greedy"]["chrf"], "chrf_beam": ev["beam"]["chrf"],
            "sent_per_s_greedy": ev["greedy"]["sentences_per_s"], "sent_per_s_beam": ev["beam"]["sentences_per_s"],
            "size_mb": ev["size_mb"],
        })
    return pd.DataFrame(rows)


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


def reranker_section(reranker: dict) -> list[str]:
    tune = reranker["tune"]
    lines = ["## Reranker (tune set)", "",
             f"Method {reranker['method']}, gain {reranker['metric']}, {tune['sentences']} sentences: "
             f"top-1 BLEU {tune['top1_bleu']:.2f}, reranked {tune['reranked_bleu']:.2f}, oracle {tune['oracle_bleu']:.2f}.", ""]
    if "lists" in reranker:
        lists = pd.DataFrame(reranker["lists"]).T.rename_axis("n-best lists").reset_index()
        lines += ["Left-to-right lists alone against the merged L2R+R2L lists:", "", lists.to_markdown(index=False, floatfmt=".2f"), ""]
    weights = pd.DataFrame({"feature": reranker["features"], "weight": reranker["weights"]})
    return lines + [weights.to_markdown(index=False, floatfmt=".3f"), ""]


def markdown(table: pd.DataFrame, evaluations: list[dict], reranker: dict | None, costs: list[dict] = ()) -> str:
    ev = evaluations[0]
    lines = [
        "# mtdistill report", "",
        f"Test set: {ev['test_sentences']} sentences, {ev['references']} reference(s). "
        f"Greedy and beam {ev['beam']['beam']} decoding, batch size {ev['beam']['batch_size']}, {ev['threads']} thread(s).", "",
        table.to_markdown(index=False, floatfmt=".2f"), "",
        "sacreBLEU signatures:", "",
        f"- BLEU: `{ev['beam']['bleu_signature']}`",
        f"- chrF: `{ev['beam']['chrf_signature']}`", "",
    ]
    if reranker:
        lines += reranker_section(reranker)
    if costs:
        lines += ["## Scorers", "", "Cost over every scoring job (model loading included):", "",
                  scorer_costs(costs).to_markdown(index=False, floatfmt=".2f"), "",
                  "Feature means over every scored hypothesis:", "",
                  feature_summary(costs).to_markdown(index=False, floatfmt=".3f"), ""]
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--evaluations", nargs="+", required=True, help="evaluation JSON files")
    p.add_argument("--models", nargs="*", default=[], help="model directories (for training.json), same order")
    p.add_argument("--weights", help="reranker weights JSON")
    p.add_argument("--costs", nargs="*", default=[], help="scorer cost records (JSON)")
    p.add_argument("--csv", required=True)
    p.add_argument("--markdown", required=True)
    return p.parse_args(argv)


def run(args) -> None:
    evaluations = [read_json(p) for p in args.evaluations]
    trainings = {}
    for ev, model in zip(evaluations, args.models):
        if (Path(model) / "training.json").exists():
            trainings[ev["system"]] = read_json(Path(model) / "training.json")
    table = report_table(evaluations, trainings)
    with atomic_path(args.csv) as tmp:
        table.to_csv(tmp, index=False)
    with atomic_path(args.markdown) as tmp:
        costs = [read_json(p) for p in args.costs]
        tmp.write_text(markdown(table, evaluations, read_json(args.weights) if args.weights else None, costs), encoding="utf-8")


def main(argv=None) -> int:
    return run_main(run, parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
