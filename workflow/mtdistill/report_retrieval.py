"""The report's section on retrieval-augmented KD: what each knowledge base costs, the dev curve of the
mixing weight beta, test quality at beta 0 (the student alone, `<student>`) and at the tuned beta
(`<student>.knn`), the latency retrieval adds at batch size 1 and the paired bootstrap of the two."""

from __future__ import annotations

import math
import os

import pandas as pd

from .retrieval import KNN_SUFFIX


def base_system(system: str) -> str:
    """`<student>` of `<student>.knn`: the same student decoding without retrieval (beta 0)."""
    return system[: -len(KNN_SUFFIX)] if system.endswith(KNN_SUFFIX) else system


def keyed_by_path(files: dict[str, dict]) -> dict[str, dict]:
    return {os.path.normpath(path): content for path, content in files.items()}


def tuning_of(evaluation: dict, tuned: dict[str, dict]) -> dict | None:
    """The tune_retrieval result the evaluation decoded with: by its path, else by the student's model."""
    recorded = evaluation["retrieval"].get("tuned")
    if recorded and os.path.normpath(recorded) in tuned:
        return tuned[os.path.normpath(recorded)]
    return next((t for t in tuned.values() if t.get("model") == evaluation.get("model")), None)


def build_seconds(evaluation: dict, kb_metas: dict[str, dict]) -> float:
    """Seconds to build every shard the evaluation searched (their kb.json); NaN when one is not given."""
    metas = [kb_metas.get(os.path.normpath(shard)) for shard in evaluation["retrieval"]["kb"]]
    if not metas or not all(metas):
        return math.nan
    return float(sum(meta["build_seconds"] for meta in metas))


def p_value(significance: list[dict], system: str, baseline: str, round_: int, metric: str) -> float | None:
    """The paired bootstrap p of `system` against `baseline` in that round, when a significance file tested it."""
    for result in significance:
        if result.get("round", 0) != round_:
            continue
        for pair in result.get("comparisons", []):
            if (pair["system"], pair["baseline"]) == (system, baseline) and metric in pair["metrics"]:
                return pair["metrics"][metric]["p_value"]
        if result.get("baseline") == baseline and metric in result.get("systems", {}).get(system, {}):
            return result["systems"][system][metric]["p_value"]
    return None


def latency_ms(evaluation: dict | None) -> float:
    """Milliseconds per sentence of greedy decoding at batch size 1."""
    batch1 = (evaluation or {}).get("batch1")
    return 1000.0 / batch1["sentences_per_s"] if batch1 else math.nan


def score(evaluation: dict | None, decoding: str, metric: str) -> float:
    return (evaluation or {}).get(decoding, {}).get(metric, math.nan)


def retrieval_systems(evaluations: list[dict]) -> list[tuple[dict, dict | None]]:
    """Every evaluation that decoded with retrieval, with its student's evaluation at beta 0 (or None)."""
    by_name = {(ev["system"], ev.get("round", 0)): ev for ev in evaluations}
    return [(ev, by_name.get((base_system(ev["system"]), ev.get("round", 0))))
            for ev in evaluations if "retrieval" in ev]


def cost_table(pairs: list[tuple[dict, dict | None]], kb_metas: dict[str, dict]) -> pd.DataFrame:
    rows = []
    for knn, plain in pairs:
        record = knn["retrieval"]
        base, with_knn = latency_ms(plain), latency_ms(knn)
        rows.append({"system": knn["system"], "round": knn.get("round", 0), "KB tokens": record["kb_tokens"],
                     "KB MB": record["kb_memory_mb"],
                     "MB per M tokens": record["kb_memory_mb"] / max(record["kb_tokens"], 1) * 1e6,
                     "KB build s": build_seconds(knn, kb_metas), "neighbours": record["neighbours"],
                     "beta": record["beta"], "ms/sent b1 (beta 0)": base, "ms/sent b1 (beta)": with_knn,
                     "overhead ms": with_knn - base, "overhead %": 100 * (with_knn - base) / base})
    return pd.DataFrame(rows)


def quality_table(pairs: list[tuple[dict, dict | None]], significance: list[dict]) -> pd.DataFrame:
    rows = []
    for knn, plain in pairs:
        round_ = knn.get("round", 0)
        row = {"system": knn["system"], "round": round_, "beta": knn["retrieval"]["beta"]}
        for decoding in ("beam", "greedy"):
            for metric, label in (("bleu", "BLEU"), ("chrf", "chrF")):
                row[f"{label} {decoding} (beta 0)"] = score(plain, decoding, metric)
                row[f"{label} {decoding} (beta)"] = score(knn, decoding, metric)
        for metric, label in (("bleu", "BLEU"), ("chrf", "chrF")):
            p = p_value(significance, knn["system"], base_system(knn["system"]), round_, metric)
            row[f"p ({label})"] = "-" if p is None else f"{p:.4f}" + ("*" if p < 0.05 else "")
        rows.append(row)
    return pd.DataFrame(rows)


def curve_table(pairs: list[tuple[dict, dict | None]], tuned: dict[str, dict]) -> pd.DataFrame:
    rows = []
    for knn, _ in pairs:
        tuning = tuning_of(knn, tuned)
        for point in (tuning or {}).get("curve", []):
            rows.append({"system": knn["system"], "round": knn.get("round", 0), "beta": point["beta"],
                         "dev BLEU": point["bleu"], "dev chrF": point.get("chrf", math.nan),
                         "decoding s": point.get("seconds", math.nan),
                         "tuned": "*" if point["beta"] == tuning["best_beta"] else ""})
    return pd.DataFrame(rows)


def retrieval_section(evaluations: list[dict], tuned: dict[str, dict] | None = None,
                      kb_metas: dict[str, dict] | None = None, significance: list[dict] = ()) -> list[str]:
    """`tuned`: tune_retrieval JSONs by their path; `kb_metas`: the shards' kb.json by shard directory."""
    pairs = retrieval_systems(evaluations)
    if not pairs:
        return []
    tuned, kb_metas = keyed_by_path(tuned or {}), keyed_by_path(kb_metas or {})
    quality = quality_table(pairs, significance)
    quality_formats = [".4f" if column.startswith("p (") else ".2f" for column in quality.columns]
    lines = ["## Retrieval-augmented KD", "",
             "`<student>.knn` decodes `<student>` with p = (1 - beta) p_student + beta p_kNN at every step, p_kNN the "
             "teacher distributions of the nearest knowledge-base entries to the student's projected decoder state; "
             "beta was tuned on dev (the smaller on ties). Beta 0 is `<student>` alone.", "",
             "Cost: knowledge-base entries (target tokens), the memory decoding holds (index and values), its build time "
             "(every shard), and greedy latency per sentence at batch size 1 without and with retrieval:", "",
             cost_table(pairs, kb_metas).to_markdown(index=False, floatfmt=".2f"), "",
             "Test quality at beta 0 and at the tuned beta; p: paired bootstrap of `<student>.knn` against `<student>` "
             "(beam outputs; `-` where no significance file tested the pair):", "",
             quality.to_markdown(index=False, floatfmt=quality_formats), ""]
    curve = curve_table(pairs, tuned)
    if not curve.empty:
        lines += ["Dev curve (\\* the tuned beta):", "", curve.to_markdown(index=False, floatfmt=".2f"), ""]
    return lines
