"""The report's sections on the systems compared: their vocabularies, significance, findings, seed spread,
the students' objectives, SKD acceptance against K and the labels."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from .training import record


def vocabulary_lines(table: pd.DataFrame) -> list[str]:
    """Whose vocabulary the students have (`vocab`, `vocab_size`): the teacher's, or their own SentencePiece
    vocabulary trained on their labels (student.vocabulary)."""
    known = table[table.vocab_size.notna()]
    if known.empty:
        return []
    teacher, students = known[known.system == "teacher"], known[known.system != "teacher"]
    several_rounds = students["round"].nunique() > 1

    def named(row) -> str:
        return f"{row.system} (round {row.round})" if several_rounds else row.system

    parts = [f"the teacher's has {int(teacher.vocab_size.iloc[0]):,} entries"] if len(teacher) else []
    shared, own = students[students.vocab == "teacher"], students[students.vocab == "own"]
    if len(shared) == len(students) > 0:
        parts.append("every student shares it")
    elif len(shared):
        parts.append("shared by " + ", ".join(map(named, shared.itertuples())))
    if len(own):
        sizes = ", ".join(f"{named(row)} {int(row.vocab_size):,}" for row in own.itertuples())
        parts.append("students with their own SentencePiece vocabulary, trained on the sources and labels they learn"
                     f" from (student.vocabulary, student.vocab_size): {sizes}")
    return [f"Vocabulary (`vocab`: the teacher's or the student's own; `vocab_size`: its entries): {'; '.join(parts)}.",
            ""]


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
