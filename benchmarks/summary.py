"""One table of every benchmark figure, and the targets of issue 7 stated as met or not met.

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


def targets(run: Path, results: Path) -> list[dict]:
    """Issue 7's three targets, each with the measured figure and whether it is met."""
    rows = []
    report = run / "report.csv"
    if report.is_file():
        table = pd.read_csv(report)
        last = table[table["round"] == table["round"].max()].set_index("system")
        significance = load(run / f"round{int(table['round'].max())}" / "eval" / "significance.json") or {"systems": {}}
        for rerank, top1 in (("rerank-bitext", "top1-bitext"), ("rerank-both", "top1-both")):
            if rerank in last.index and top1 in last.index:
                gain = last.bleu_beam[rerank] - last.bleu_beam[top1]
                p = significance["systems"].get(rerank, {}).get("bleu", {}).get("p_value")
                verdict = "significant" if p is not None and p < 0.05 else "not significant"
                versus = f" (p = {p:.3f} vs {significance.get('baseline')}: {verdict})" if p is not None else ""
                rows.append({"target": f"{rerank} beats {top1} (Setiawan: +1.2 bitext, +3.4 with mono)",
                             "measured": f"{gain:+.2f} BLEU{versus}", "met": bool(gain > 0)})
    speedup = load(results / "student_speedup.json")
    if speedup:
        batch1 = [r for r in speedup["results"] if r["system"] != "teacher" and r["mode"].startswith("batch 1")]
        for backend in sorted({r["backend"] for r in batch1}):
            worst = min((r for r in batch1 if r["backend"] == backend), key=lambda r: r["speed-up over teacher"])
            rows.append({"target": f"student >= 5x faster than teacher, batch 1, CPU ({backend})",
                         "measured": f"{worst['speed-up over teacher']:.2f}x (slowest student: {worst['system']})",
                         "met": worst["speed-up over teacher"] >= 5})
    backend = load(results / "backend_speed.json")
    if backend:
        for row in backend["results"]:
            if row["task"].startswith("n-best decoding"):
                rows.append({"target": f"CTranslate2 n-best decoding >= 3x hf, CPU, {row['threads']} thread(s)",
                             "measured": f"{row['speedup']:.2f}x", "met": row["speedup"] >= 3})
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", default="results", help="a finished run's results directory")
    p.add_argument("--out-dir", default=str(OUT))
    args = p.parse_args(argv)
    results, run = Path(args.out_dir), Path(args.run)
    figures = pd.DataFrame(benchmark_figures(results) + run_figures(run))
    goals = pd.DataFrame(targets(run, results))
    (results / "summary.json").write_text(json.dumps({"targets": goals.to_dict("records"),
                                                      "figures": figures.to_dict("records")}, indent=2) + "\n")
    text = ["# mtdistill benchmarks", "", "## Targets", "",
            goals.to_markdown(index=False) if len(goals) else "(no results yet)", "",
            "## Figures", "", "Each ratio was measured side by side in one run (see the benchmark's own table).", "",
            figures.to_markdown(index=False, floatfmt=".2f") if len(figures) else "(no results yet)", ""]
    (results / "summary.md").write_text("\n".join(text))
    print("\n".join(text))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
