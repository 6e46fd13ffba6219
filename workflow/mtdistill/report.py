"""Collect every system's evaluation into `report.csv` and a Markdown `report.md`."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from . import reranker_diagnostics
from .figures import FIGURES
from .labels.quality import load_diagnostics as load_label_diagnostics
from .core.io import atomic_path, read_json
from .core.cli import run_main
from .report_reranking import rounds_section, scorers_section
from .report_retrieval import retrieval_section
from .report_sections import (acceptance_section, findings_section, labels_section, objectives_section,
                              seed_section, significance_section, vocabulary_lines)
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


def vocabulary_size(model: str | Path) -> int | None:
    """A model's vocabulary size as its config.json states it (cheaper than loading its tokenizer)."""
    path = Path(model) / "config.json"
    if not path.is_file():
        return None
    config = read_json(path)
    return config.get("vocab_size") or config.get("text_config", {}).get("vocab_size")


def marian_entries(model: Path) -> dict | None:
    """The entries of a Marian tokenizer's vocabulary (vocab.json); None for other tokenizers."""
    path = model / "vocab.json"
    return read_json(path) if path.is_file() else None


def vocabularies(evaluations: list[dict], models: list[str]) -> dict[tuple, dict]:
    """(system, round) -> whose vocabulary the model has (`vocab`: teacher, or own when its entries are not
    its round's teacher's) and its size (`vocab_size`)."""
    directories = {(ev["system"], ev.get("round", 0)): Path(model) for ev, model in zip(evaluations, models)}
    teachers = {round_: marian_entries(model) for (system, round_), model in directories.items() if system == "teacher"}
    found = {}
    for (system, round_), model in directories.items():
        size = vocabulary_size(model)
        if size is None:
            continue
        if system == "teacher":
            whose = "teacher"
        elif round_ not in teachers:
            whose = "-"  # no teacher to compare with
        else:
            shared = teachers[round_] is not None and marian_entries(model) == teachers[round_]
            whose = "teacher" if shared else "own"
        found[system, round_] = {"vocab": whose, "vocab_size": size}
    return found


def report_table(evaluations: list[dict], trainings: dict[tuple, dict],
                 vocabulary: dict[tuple, dict] | None = None) -> pd.DataFrame:
    rows = []
    with_comet = any("comet" in ev["beam"] for ev in evaluations)
    for ev in evaluations:
        training = trainings.get((ev["system"], ev.get("round", 0)), {})
        vocab = (vocabulary or {}).get((ev["system"], ev.get("round", 0)), {"vocab": "-", "vocab_size": None})
        greedy, beam, batch1 = ev["greedy"], ev["beam"], ev.get("batch1", {})
        rows.append({
            "system": ev["system"], "round": ev.get("round", 0), "strategy": ev["strategy"],
            "init": initialisation(ev["system"], training), **vocab, "seed": record.arguments(training).get("seed"),
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
    table = pd.DataFrame(rows)
    table["vocab_size"] = table["vocab_size"].astype("Int64")  # whole numbers, blank where unknown
    return add_speedups(table)


def add_speedups(table: pd.DataFrame) -> pd.DataFrame:
    """Sentences/s over the same round's teacher's: greedy at batch size 1 and batched."""
    teacher = table[table.system == "teacher"].set_index("round")
    for column, speed in (("speedup_b1", "sent_per_s_b1"), ("speedup_batched", "sent_per_s_greedy")):
        table[column] = table[speed] / table["round"].map(teacher[speed])
    return table


def markdown(table: pd.DataFrame, evaluations: list[dict], diagnostics: list[dict] = (), costs: list[dict] = (),
             trainings: dict | None = None, significance: list[dict] = (), note: str = "",
             findings: dict | None = None, sweeps: list[dict] = (), label_diagnostics: list[dict] = (),
             tuned_retrieval: dict[str, dict] | None = None, kb_metas: dict[str, dict] | None = None) -> str:
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
    lines += vocabulary_lines(table)
    if "comet_checkpoint" in ev:
        lines += [f"COMET (`comet_*`): system-level score (segment mean) of `{ev['comet_checkpoint']}`.", ""]
    lines += findings_section(significance, findings or {})
    lines += seed_section(table)
    lines += significance_section(significance)
    lines += objectives_section(table, trainings)
    lines += retrieval_section(evaluations, tuned_retrieval, kb_metas, significance)
    lines += acceptance_section(sweeps)
    lines += labels_section(label_diagnostics)
    lines += rounds_section(table, diagnostics, trainings)
    lines += scorers_section(costs)
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
    p.add_argument("--retrieval", nargs="*", default=[], help="tuned kNN mixing weights (mtdistill.tune_retrieval JSON)")
    p.add_argument("--kb", nargs="*", default=[], help="knowledge-base shard directories (their kb.json, mtdistill.build_kb)")
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
    table = report_table(evaluations, trainings, vocabularies(evaluations, args.models))
    with atomic_path(args.csv) as tmp:
        table.to_csv(tmp, index=False)
    with atomic_path(args.markdown) as tmp:
        costs = [cost for p in args.costs for cost in read_json(p)]
        diagnostics = [reranker_diagnostics.load(p) for p in args.diagnostics]
        significance = [read_json(p) for p in args.significance]
        findings = {(f["system"], f["baseline"]): f.get("finding", "") for f in json.loads(args.findings)}
        text = markdown(table, evaluations, diagnostics, costs, trainings, significance, args.note, findings,
                        [read_json(p) for p in args.acceptance], [load_label_diagnostics(p) for p in args.labels],
                        {p: read_json(p) for p in args.retrieval}, {p: read_json(Path(p) / "kb.json") for p in args.kb})
        tmp.write_text(text + figures_section(args.figures, args.markdown), encoding="utf-8")


def main(argv=None) -> int:
    return run_main(run, parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
