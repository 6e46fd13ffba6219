"""Collect every system's evaluation into `report.csv` and a Markdown `report.md`."""

from __future__ import annotations

import argparse
import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from . import reranker_diagnostics
from .figures import FIGURES
from .labels.quality import load_diagnostics as load_label_diagnostics
from .core.io import atomic_path, read_json
from .core.cli import run_main
from .training import record


def initialisation(system: str, training: dict) -> str:
    """How a model started: from scratch, from the teacher's bottom or spaced layers, or from a student."""
    arguments = record.arguments(training)
    if not arguments:
        return "-"
    if arguments.get("init"):
        return "from " + Path(arguments["init"]).name
    if arguments.get("init_from_teacher"):
        return f"teacher {arguments.get('init_layers', 'bottom')} layers"
    return "scratch"


def report_table(evaluations: list[dict], trainings: dict[tuple, dict]) -> pd.DataFrame:
    rows = []
    with_comet = any("comet" in ev["beam"] for ev in evaluations)
    for ev in evaluations:
        training = trainings.get((ev["system"], ev.get("round", 0)), {})
        greedy, beam, batch1 = ev["greedy"], ev["beam"], ev.get("batch1", {})
        rows.append({
            "system": ev["system"], "round": ev.get("round", 0), "strategy": ev["strategy"],
            "init": initialisation(ev["system"], training), "seed": record.arguments(training).get("seed"),
            "parameters": ev["parameters"], "nonzero": ev.get("nonzero_parameters", ev["parameters"]),
            "train_pairs": training.get("train_pairs"),
            "bleu_greedy": greedy["bleu"], "bleu_beam": beam["bleu"],
            "chrf_greedy": greedy["chrf"], "chrf_beam": beam["chrf"],
            "ter_greedy": greedy.get("ter", np.nan), "ter_beam": beam.get("ter", np.nan),
            **({"comet_greedy": greedy.get("comet", np.nan), "comet_beam": beam.get("comet", np.nan)} if with_comet else {}),
            "sent_per_s_greedy": greedy["sentences_per_s"], "sent_per_s_beam": beam["sentences_per_s"],
            "sent_per_s_b1": batch1.get("sentences_per_s", np.nan),
            "tok_per_s_greedy": greedy.get("target_tokens_per_s", np.nan), "tok_per_s_beam": beam.get("target_tokens_per_s", np.nan),
            "tok_per_s_b1": batch1.get("target_tokens_per_s", np.nan),
            "size_mb": ev["size_mb"],
        })
    return add_speedups(pd.DataFrame(rows))


def add_speedups(table: pd.DataFrame) -> pd.DataFrame:
    """Sentences/s over the same round's teacher's: greedy at batch size 1 and batched."""
    teacher = table[table.system == "teacher"].set_index("round")
    for column, speed in (("speedup_b1", "sent_per_s_b1"), ("speedup_batched", "sent_per_s_greedy")):
        table[column] = table[speed] / table["round"].map(teacher[speed])
    return table


def significance_section(results: list[dict]) -> list[str]:
    """Per round: every system's score [95% CI] and p-value against the sequence-level KD baseline."""
    if not results:
        return []
    first = results[0]
    metrics = [(m, label) for m, label in (("bleu", "BLEU"), ("chrf", "chrF"), ("ter", "TER"), ("comet", "COMET"))
               if m in first["signatures"]]
    lines = [f"## Significance (paired bootstrap vs {first['baseline']})", "",
             f"sacreBLEU paired bootstrap resampling on the beam outputs, {first['samples']} resamples, seed {first['seed']}: "
             f"each metric's score with its 95% confidence interval (bootstrap mean +- half the 2.5-97.5 percentile "
             f"spread) and the p-value of its difference from {first['baseline']} (TER: lower is better).", ""]
    for result in results:
        columns = ["system"] + [c for _, label in metrics for c in (f"{label} [95% CI]", "p")]
        rows = []
        for system, scores in result["systems"].items():
            row = [system]
            for metric, _ in metrics:
                m, digits = scores[metric], 4 if metric == "comet" else 2
                p_value = m["p_value"]
                row += [f"{m['score']:.{digits}f} [{m['ci'][0]:.{digits}f}, {m['ci'][1]:.{digits}f}]",
                        "-" if p_value is None else f"{p_value:.4f}" + ("*" if p_value < 0.05 else "")]
            rows.append(row)
        lines += [f"### Round {result['round']} (baseline {result['baseline']})", "",
                  pd.DataFrame(rows, columns=columns).to_markdown(index=False), ""]
    lines += [r"\* p < 0.05. Signatures:", "", *[f"- {label}: `{first['signatures'][m]}`" for m, label in metrics], ""]
    return lines


def verdict(delta: float, p_value: float | None, lower_is_better: bool = False) -> str:
    """'holds' only for a gain of the claimed sign at p < 0.05; the other outcomes said as plainly."""
    if p_value is None or p_value >= 0.05:
        return "not significant"
    better = delta < 0 if lower_is_better else delta > 0
    return "holds" if better else "reversed"


def findings_section(results: list[dict], findings: dict[tuple, str]) -> list[str]:
    """Each named comparison: both scores, the difference, the system's 95% CI and p, and the verdict."""
    rows = []
    for result in results:
        for pair in result.get("comparisons", []):
            bleu, chrf = pair["metrics"]["bleu"], pair["metrics"]["chrf"]
            rows.append({
                "finding": findings.get((pair["system"], pair["baseline"]), ""), "round": result["round"],
                "system": pair["system"], "baseline": pair["baseline"],
                "BLEU": f"{bleu['score']:.2f} vs {bleu['baseline_score']:.2f}", "ΔBLEU": f"{bleu['delta']:+.2f}",
                "BLEU 95% CI": f"[{bleu['ci'][0]:.2f}, {bleu['ci'][1]:.2f}]", "p (BLEU)": f"{bleu['p_value']:.4f}",
                "verdict (BLEU)": verdict(bleu["delta"], bleu["p_value"]),
                "ΔchrF": f"{chrf['delta']:+.2f}", "p (chrF)": f"{chrf['p_value']:.4f}",
                "verdict (chrF)": verdict(chrf["delta"], chrf["p_value"]),
            })
    if not rows:
        return []
    return ["## Findings (paired bootstrap of each system against its baseline)", "",
            "Beam outputs on the test set. A finding \"holds\" only when the system beats its baseline at p < 0.05, "
            "is \"reversed\" when the baseline is significantly better, and is \"not significant\" otherwise. "
            "The CI is the system's 95% bootstrap interval.", "",
            pd.DataFrame(rows).to_markdown(index=False), ""]


def seed_section(table: pd.DataFrame) -> list[str]:
    """Students trained with several seeds (<system>.seed<N> replicas): mean and standard deviation."""
    replicated = table[table.system.str.contains(r"\.seed\d+$", regex=True)]
    if replicated.empty:
        return []
    rows = []
    for base in dict.fromkeys(replicated.system.str.replace(r"\.seed\d+$", "", regex=True)):
        runs = table[(table.system == base) | table.system.str.fullmatch(rf"{re.escape(base)}\.seed\d+")]
        row = {"system": base, "seeds": ", ".join(str(s) for s in runs.seed), "runs": len(runs)}
        for column, label in (("bleu_beam", "BLEU"), ("chrf_beam", "chrF")):
            row[f"{label} mean"], row[f"{label} sd"] = runs[column].mean(), runs[column].std(ddof=1)
            row[f"{label} min"], row[f"{label} max"] = runs[column].min(), runs[column].max()
        rows.append(row)
    return ["## Seed spread", "",
            "Beam BLEU and chrF of the students trained with several seeds (sample standard deviation), beside "
            "the bootstrap above, which resamples the test set of one seed's student:", "",
            pd.DataFrame(rows).to_markdown(index=False, floatfmt=".2f"), ""]


def acceptance_section(sweeps: list[dict]) -> list[str]:
    """SKD acceptance against K: the share of the student's drafted tokens the teacher keeps."""
    lines = []
    for sweep in sweeps:
        rows = pd.DataFrame(sweep["sweep"])
        lines += [f"SKD acceptance against K, student {sweep.get('student', '')} drafting on "
                  f"{sweep.get('sentences', '')} transfer sentences (gamma {sweep.get('gamma', '')}):", "",
                  rows.to_markdown(index=False, floatfmt=".3f"), "",
                  f"Chosen K: {sweep.get('chosen_k')} ({sweep.get('choice', '')}).", ""]
    return ["## Speculative KD: acceptance against K", "", *lines] if lines else []


def label_table(label_diagnostics: list[dict]) -> pd.DataFrame:
    rows = []
    for diag in label_diagnostics:
        flat = pd.json_normalize(diag, sep=" ").iloc[0].to_dict()
        rows.append(flat)
    table = pd.DataFrame(rows)
    # thresholds are the config's; the dropped ids are for a closer look in the JSON
    # `ref` has no filter record (None): no column for it
    table = table[[c for c in table.columns if c != "filter"
                   and not c.startswith(("filter thresholds", "filter dropped_sent_ids"))]]
    first = [c for c in ("round", "strategy", "set") if c in table]
    return table[first + [c for c in table.columns if c not in first]]


def labels_section(label_diagnostics: list[dict]) -> list[str]:
    if not label_diagnostics:
        return []
    return ["## Labels", "",
            "Per strategy and transfer set: how the labels differ from the teacher's top-1, their length against the "
            "source, copies, empty and repetitive labels, and what the degenerate-hypothesis filter dropped before "
            "the strategy picked (the same filter for every strategy; `ref` labels are the references, unfiltered):", "",
            label_table(label_diagnostics).to_markdown(index=False, floatfmt=".3f"), ""]


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


def objectives_section(table: pd.DataFrame, trainings: dict[tuple, dict]) -> list[str]:
    """Cost of every student's objective against cross-entropy, SKD acceptance, pruning before/after."""
    rows, notes = [], []
    for (system, round_), training in trainings.items():
        if system == "teacher":
            continue
        arguments = record.arguments(training)
        seconds, tokens_per_s = record.cost(training)
        row = {"system": system, "round": round_, "objective": record.objective(training),
               "steps": training.get("steps"), "s/step": seconds, "target tok/s": tokens_per_s}
        acceptance = training.get("acceptance_per_step")
        if acceptance:
            tail = max(1, len(acceptance) // 10)
            row["acceptance start"], row["acceptance end"] = np.mean(acceptance[:tail]), np.mean(acceptance[-tail:])
            notes.append(f"- {system}: acceptance rate {row['acceptance start']:.2f} (first {tail} steps) -> "
                         f"{row['acceptance end']:.2f} (last {tail}); plot `round{round_}/students/{system}/acceptance.png`.")
        if row["objective"] == "prune":
            init = Path(arguments.get("init", "")).name
            before = table[(table.system == init) & (table["round"] == round_)]
            after = table[(table.system == system) & (table["round"] == round_)]
            if len(before) and len(after):
                notes.append(f"- {system}: non-zero parameters {before.nonzero.iloc[0]:,} -> {after.nonzero.iloc[0]:,} "
                             f"({arguments.get('prune', 0):.0%} of the layers' linear weights pruned), test BLEU (beam) "
                             f"{before.bleu_beam.iloc[0]:.2f} -> {after.bleu_beam.iloc[0]:.2f} after retraining (from {init}).")
        rows.append(row)
    if not rows:
        return []
    costs = pd.DataFrame(rows)
    baseline = costs[costs.objective == "cross_entropy"]["target tok/s"].mean()
    costs["cost per token vs CE"] = baseline / costs["target tok/s"]
    return ["## Student objectives", "",
            "Training cost per step and per target token (the cost ratio divides the mean cross-entropy "
            "throughput by the objective's; benchmarks/objective_cost.py measures per-step ratios side by side):", "",
            costs.to_markdown(index=False, floatfmt=".3f"), "", *notes, ""]


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


def markdown(table: pd.DataFrame, evaluations: list[dict], diagnostics: list[dict] = (), costs: list[dict] = (),
             trainings: dict | None = None, significance: list[dict] = (), note: str = "",
             findings: dict | None = None, sweeps: list[dict] = (), label_diagnostics: list[dict] = ()) -> str:
    trainings = trainings or {}
    ev = evaluations[0]
    lines = [
        "# mtdistill report", "", *([note, ""] if note else []),
        f"Test set: {ev['test_sentences']} sentences, {ev['references']} reference(s). "
        f"Greedy and beam {ev['beam']['beam']} decoding, batch size {ev['beam']['batch_size']}, {ev['threads']} thread(s). "
        "Students are named <label strategy>-<transfer sources>; `round` is the self-training round of their labels.", "",
        table.to_markdown(index=False, floatfmt=[".4f" if c.startswith("comet") else ".2f" for c in table.columns]), "",
        "sacreBLEU signatures:", "",
        f"- BLEU: `{ev['beam']['bleu_signature']}`",
        f"- chrF: `{ev['beam']['chrf_signature']}`",
        *([f"- TER: `{ev['beam']['ter_signature']}`"] if "ter_signature" in ev["beam"] else []), "",
    ]
    if "batch1" in ev:
        lines += [f"Speed: sentences/s (`sent_per_s_*`) and target tokens/s (`tok_per_s_*`) of the batched greedy and beam "
                  f"passes, and of greedy decoding at batch size 1 (`*_b1`, the first {ev['batch1']['sentences']} test "
                  "sentences); `speedup_*` divides a system's greedy sentences/s by its round's teacher's.", ""]
    if "comet_checkpoint" in ev:
        lines += [f"COMET (`comet_*`): system-level score (segment mean) of `{ev['comet_checkpoint']}`.", ""]
    lines += findings_section(significance, findings or {})
    lines += seed_section(table)
    lines += significance_section(significance)
    lines += objectives_section(table, trainings)
    lines += acceptance_section(sweeps)
    lines += labels_section(label_diagnostics)
    if diagnostics:
        lines += ["## Self-training rounds", "",
                  rounds_table(table, diagnostics, trainings).to_markdown(index=False, floatfmt=".2f"), "",
                  "## Reranker (corpus BLEU and chrF of each pick on tune and dev)", ""]
        for round_, diag in enumerate(diagnostics):
            lines += reranker_section(diag, round_)
    if costs:
        lines += ["## Scorers", "", "Cost over every scoring job (model loading included):", "",
                  scorer_costs(costs).to_markdown(index=False, floatfmt=".2f"), "",
                  "Feature means over every scored hypothesis:", "",
                  feature_summary(costs).to_markdown(index=False, floatfmt=".3f"), ""]
    return "\n".join(lines)


def figures_section(figures: list[str], markdown_path: str) -> str:
    """Image links to the figures (mtdistill.figures), relative to report.md."""
    if not figures:
        return ""
    lines = ["", "## Figures", ""]
    for path in figures:
        drawing = FIGURES.get(Path(path).stem)
        link = Path(os.path.relpath(path, Path(markdown_path).parent)).as_posix()
        lines += [f"![{drawing.title if drawing else Path(path).stem}]({link})", ""]
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--evaluations", nargs="+", required=True, help="evaluation JSON files")
    p.add_argument("--models", nargs="*", default=[], help="model directories (for training.json), same order")
    p.add_argument("--diagnostics", nargs="*", default=[], help="reranker diagnostics JSON, one per round in order")
    p.add_argument("--costs", nargs="*", default=[], help="scorer cost records (JSON lists, one per round)")
    p.add_argument("--significance", nargs="*", default=[], help="paired bootstrap results (JSON), one per round")
    p.add_argument("--figures", nargs="*", default=[], help="figure PNGs (mtdistill.figures) to link from report.md")
    p.add_argument("--acceptance", nargs="*", default=[], help="SKD acceptance sweeps (mtdistill.skd_acceptance JSON)")
    p.add_argument("--labels", nargs="*", default=[], help="label diagnostics JSON (mtdistill.select_labels)")
    p.add_argument("--findings", default="[]", help="JSON list of {system, baseline, finding}: the comparisons' names")
    p.add_argument("--note", default="", help="a line under the title: what this run is for")
    p.add_argument("--csv", required=True)
    p.add_argument("--markdown", required=True)
    return p.parse_args(argv)


def run(args) -> None:
    evaluations = [read_json(p) for p in args.evaluations]
    trainings = {}
    for ev, model in zip(evaluations, args.models):
        training = record.read(model)
        if training is not None:
            trainings[ev["system"], ev.get("round", 0)] = training
    table = report_table(evaluations, trainings)
    with atomic_path(args.csv) as tmp:
        table.to_csv(tmp, index=False)
    with atomic_path(args.markdown) as tmp:
        costs = [cost for p in args.costs for cost in read_json(p)]
        diagnostics = [reranker_diagnostics.load(p) for p in args.diagnostics]
        significance = [read_json(p) for p in args.significance]
        findings = {(f["system"], f["baseline"]): f.get("finding", "") for f in json.loads(args.findings)}
        text = markdown(table, evaluations, diagnostics, costs, trainings, significance, args.note, findings,
                        [read_json(p) for p in args.acceptance], [load_label_diagnostics(p) for p in args.labels])
        tmp.write_text(text + figures_section(args.figures, args.markdown), encoding="utf-8")


def main(argv=None) -> int:
    return run_main(run, parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
