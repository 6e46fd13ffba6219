"""One table of every benchmark figure, and the targets of issue 7 stated as met or not met.

A quality target (one system beats another on a metric) is met only when the gain has the claimed
sign and the run's paired bootstrap (significance.json) gives p < 0.05 for that very pair; otherwise
it is "not met (n.s.)", "not met (opposite, p=...)" or, without a test of the pair, "not met (no
test)". Speed targets are ratios measured side by side and state their threshold.

Reads the JSON the other benchmarks wrote (benchmarks/results/) and a finished run (`--run results`)
for the figures a run measures itself: scoring throughput per scorer (its cost records), training
throughput per model (training.json) and test BLEU with the paired-bootstrap p-value of the rerank
student against the sequence-level KD (top1) student.

    python benchmarks/summary.py --run results

Writes benchmarks/results/summary.{json,md}.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

OUT = Path(__file__).resolve().parent / "results"


def load(path: Path) -> dict | list | None:
    return json.loads(path.read_text()) if path.is_file() else None


def figure(group: str, name: str, value: float, unit: str, source: str) -> dict:
    return {"group": group, "figure": name, "value": value, "unit": unit, "source": source}


def run_figures(run: Path) -> list[dict]:
    """Scoring hypotheses/s per scorer and training target tokens/s per model, from the run's own records."""
    rows = []
    costs = [record for path in sorted(run.glob("round*/features/costs.json")) for record in load(path)]
    if costs:
        table = pd.DataFrame(costs).groupby("scorer")[["hypotheses", "seconds"]].sum()
        for scorer, row in table.iterrows():
            rows.append(figure("throughput", f"scoring, {scorer}", row.hypotheses / row.seconds, "hypotheses/s", "run cost records (model loading included)"))
    for training in sorted(run.glob("**/training.json")):
        history = [h for h in load(training).get("history", []) if "target_tokens_per_s" in h]
        if history:
            rate = sum(h["target_tokens_per_s"] for h in history) / len(history)
            rows.append(figure("throughput", f"training, {training.parent.relative_to(run)}", rate, "target tokens/s", "training.json"))
    return rows


def benchmark_figures(results: Path) -> list[dict]:
    rows = []
    backend = load(results / "backend_speed.json")
    for row in (backend or {}).get("results", []):
        for name in ("hf", "ctranslate2"):
            rows.append(figure("throughput", f"{row['task']}, {row['threads']} thread(s), {name}", row[name], row["unit"], "backend_speed"))
        rows.append(figure("ratio", f"{row['task']}, {row['threads']} thread(s), ctranslate2 / hf", row["speedup"], "x", "backend_speed"))
    speedup = load(results / "student_speedup.json")
    for row in (speedup or {}).get("results", []):
        if row["system"] != "teacher":
            rows.append(figure("ratio", f"{row['system']} over teacher, {row['backend']}, {row['mode']}", row["speed-up over teacher"], "x", "student_speedup"))
    dag = load(results / "dag_scale.json")
    for row in (dag or {}).get("results", []):
        rows.append(figure("scale", f"dry-run DAG, {row['shards']} shards ({row['jobs']} jobs)", row["seconds"], "s", "dag_scale"))
    memory = load(results / "shard_memory.json")
    for row in (memory or {}).get("steps", []):
        rows.append(figure("scale", f"peak memory 4x / 1x shard, {row['step']}", row["memory_ratio_4x_1x"], "x", "shard_memory"))
    objectives = load(results / "objective_cost.json")
    for row in (objectives or {}).get("results", []):
        rows.append(figure("ratio", f"training step cost, {row['objective']} / cross-entropy", row["vs_cross_entropy"], "x", "objective_cost"))
    return rows


ALPHA = 0.05
# (system, versus, metric, claimed sign of system - versus, claim); TER would be claimed sign -1 (lower is better)
QUALITY_TARGETS = (
    ("rerank-bitext", "top1-bitext", "bleu", +1, "Setiawan: +1.2 bitext, +3.4 with mono"),
    ("rerank-both", "top1-both", "bleu", +1, "Setiawan: +1.2 bitext, +3.4 with mono"),
)
METRIC_NAMES = {"bleu": "BLEU", "chrf": "chrF", "ter": "TER", "comet": "COMET"}


def verdict(gain: float, p: float | None, claimed_sign: int = +1, alpha: float = ALPHA) -> str:
    """"met" only when `gain` has the claimed sign and p < alpha (a quality target's rule)."""
    if p is None or p != p:  # absent or NaN: the pair was never tested
        return "not met (no test)"
    if p >= alpha:
        return "not met (n.s.)"
    sign = (gain > 0) - (gain < 0)
    if sign == claimed_sign:
        return "met"
    if sign == 0:
        return f"not met (no difference, p={p:.3f})"
    return f"not met (opposite, p={p:.3f})"


def p_value(significance: dict | None, system: str, versus: str, metric: str) -> float | None:
    """The paired-bootstrap p-value of `system` against `versus`, if significance.json tested that pair.

    significance.json (mtdistill.significance) lists the tested pairs under "comparisons"
    ([{"system", "baseline", "metrics": {metric: {"p_value", ...}}}]); older files test every system
    against one baseline only: {"baseline": name, "systems": {name: {metric: {..., "p_value"}}}}.
    """
    if not significance:
        return None
    for pair in significance.get("comparisons", []):
        if (pair["system"], pair["baseline"]) == (system, versus):
            return pair["metrics"].get(metric, {}).get("p_value")
    if significance.get("baseline") != versus:
        return None
    return significance.get("systems", {}).get(system, {}).get(metric, {}).get("p_value")


def quality_targets(last: pd.DataFrame, significance: dict | None, claims=QUALITY_TARGETS) -> list[dict]:
    """One row per claim whose two systems are in `last` (report rows of one round, indexed by system)."""
    rows = []
    for system, versus, metric, claimed_sign, source in claims:
        column = f"{metric}_beam"
        if system not in last.index or versus not in last.index or column not in last.columns:
            continue
        gain = float(last[column][system] - last[column][versus])
        p = p_value(significance, system, versus, metric)
        name = METRIC_NAMES.get(metric, metric)
        result = verdict(gain, p, claimed_sign)
        if p is not None:
            shown = f"{p:.3f}"
        elif significance and significance.get("baseline") != versus:
            shown = f"- (significance.json does not test {system} against {versus})"
        else:
            shown = "- (no significance.json)" if not significance else "- (no p-value)"
        lower = ", lower is better" if claimed_sign < 0 else ""
        rows.append({"target": f"{system} beats {versus} on {name} ({source}{lower})",
                     "gain / ratio": f"{gain:+.2f} {name}", "p": shown, "verdict": result, "met": result == "met",
                     "gain": gain, "p_value": p, "rule": f"sign {claimed_sign:+d} and p < {ALPHA}"})
    return rows


def ratio_target(target: str, measured: float, threshold: float, detail: str = "") -> dict:
    """A speed target: a ratio measured side by side, met at `threshold` or above (no significance test)."""
    met = bool(measured >= threshold)
    return {"target": target, "gain / ratio": f"{measured:.2f}x{detail}", "p": "-",
            "verdict": "met" if met else f"not met ({measured:.2f}x < {threshold:g}x)", "met": met,
            "gain": measured, "p_value": None, "rule": f"ratio >= {threshold:g}x, measured side by side"}


def speed_targets(results: Path) -> list[dict]:
    rows = []
    speedup = load(results / "student_speedup.json")
    if speedup:
        batch1 = [r for r in speedup["results"] if r["system"] != "teacher" and r["mode"].startswith("batch 1")]
        for backend in sorted({r["backend"] for r in batch1}):
            worst = min((r for r in batch1 if r["backend"] == backend), key=lambda r: r["speed-up over teacher"])
            rows.append(ratio_target(f"student >= 5x faster than teacher, batch 1, CPU ({backend})",
                                     worst["speed-up over teacher"], 5, f" (slowest student: {worst['system']})"))
    backend = load(results / "backend_speed.json")
    if backend:
        for row in backend["results"]:
            if row["task"].startswith("n-best decoding"):
                rows.append(ratio_target(f"CTranslate2 n-best decoding >= 3x hf, CPU, {row['threads']} thread(s)",
                                         row["speedup"], 3))
    return rows


def targets(run: Path, results: Path) -> list[dict]:
    """Issue 7's targets, each with the measured figure, its p-value (quality) and its verdict."""
    rows = []
    report = run / "report.csv"
    if report.is_file():
        table = pd.read_csv(report)
        last_round = int(table["round"].max())
        last = table[table["round"] == last_round].set_index("system")
        significance = load(run / f"round{last_round}" / "eval" / "significance.json")
        rows += quality_targets(last, significance)
    return rows + speed_targets(results)


TABLE = ["target", "gain / ratio", "p", "verdict"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", default="results", help="a finished run's results directory")
    p.add_argument("--out-dir", default=str(OUT))
    args = p.parse_args(argv)
    results, run = Path(args.out_dir), Path(args.run)
    figures = pd.DataFrame(benchmark_figures(results) + run_figures(run))
    goal_rows = targets(run, results)
    goals = pd.DataFrame(goal_rows)
    (results / "summary.json").write_text(json.dumps({"targets": goal_rows,
                                                      "figures": figures.to_dict("records")}, indent=2) + "\n")
    text = ["# mtdistill benchmarks", "", "## Targets", "",
            goals[TABLE].to_markdown(index=False) if len(goals) else "(no results yet)", "",
            f"A quality target is met only with the claimed sign and p < {ALPHA} (paired bootstrap of the run, "
            "against the pair's own baseline); speed targets are ratios measured side by side.", "",
            "## Figures", "", "Each ratio was measured side by side in one run (see the benchmark's own table).", "",
            figures.to_markdown(index=False, floatfmt=".2f") if len(figures) else "(no results yet)", ""]
    (results / "summary.md").write_text("\n".join(text))
    print("\n".join(text))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
