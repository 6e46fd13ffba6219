"""The workflow's plan, from the config alone: where every output lives, which model plays which role,
the command-line options of every step, the files the report and figures read, and the config checks
a schema cannot state. workflow/rules/common.smk only wires these to wildcards, so the tests and
`mtdistill.estimate` use the same logic without a dry run. The stages before the labels are in
mtdistill.layout.

Which scorers rank a round's transfer hypotheses is known only once its reranker is tuned (a
Snakemake checkpoint), so the methods that depend on it take that list, `selected`, from the caller.
The names of scorer kinds, label strategies, objectives and figures come from their registries.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import tempfile
from pathlib import Path

import yaml

from . import families, objectives
from .corpora import READERS
from .labels import STRATEGIES
from .retrieval import KNN_SUFFIX
from .layout import (COMPOSITIONS, HELD_OUT, HELPERS, MBR_KIND, TEACHER, Layout, acceptance_file, as_json,  # noqa: F401
                     base_system, cli_options, ct2_model, kb_projection, kb_shard, label_files, nbest_shard,
                     selected_features_list, student_dir, tuned_retrieval)
from .scorers import KINDS, OPTIONAL_KEYS

SCHEMA = Path(__file__).resolve().parents[1] / "schemas" / "config.schema.yaml"
# COMET (unbabel-comet 2.2.7: transformers<5, numpy<2) runs in an environment of its own: scorer kinds
# registered with environment "comet" and evaluation.comet's step use its interpreter (Plan.comet_python).
COMET_PYTHON_VARIABLE = "MTDISTILL_COMET_PYTHON"
COMET_VENV = ".venv-comet"  # built by `make install` from envs/comet.txt
COMET_ENV, MAIN_ENV = "../../envs/comet.yaml", "../../envs/mtdistill.yaml"  # --sdm conda, relative to the rules
# Config keys renamed for "one name for one idea": the old key is refused, naming the new one.
RENAMED = {("student", "variants"): "student.objectives", ("resources", "train_variant"): "resources.train_objective",
           ("resources", "finetune_teacher"): "resources.finetune_decoders"}


def generates(objective: str) -> bool:
    """Whether an objective's students generate while they train (speculative KD): decoding's length
    limit applies, and they log the acceptance rate the skd_acceptance figure draws."""
    return "max_len_a" in objectives.OBJECTIVES[objective].arguments


def uses_kb(objective: str) -> bool:
    """Whether an objective's students learn from a teacher knowledge base (retrieval-augmented KD):
    the workflow builds one on their labels, tunes the kNN mixing weight and evaluates them with it."""
    return "kb" in objectives.OBJECTIVES[objective].arguments


def student_tokenizer_dir(round, labels: str) -> str:
    """The students' own vocabulary on the labels of `labels` (a student `<strategy>-<transfer>`)."""
    return f"results/round{round}/tokenizers/{labels}"


def retrieval_system(student: str) -> str:
    """The evaluation of a retrieval-augmented student decoding with its knowledge base."""
    return f"{student}{KNN_SUFFIX}"


def refuse_renamed(config: dict) -> None:
    """A ValueError naming the new key for a key this workflow renamed (before the schema says 'unexpected')."""
    for (section, key), new in RENAMED.items():
        if key in (config.get(section) or {}):
            raise ValueError(f"config key {section}.{key}: renamed {new}")


def schema() -> dict:
    """The config schema with the registries' names as its enums (an extension's names included)."""
    document = yaml.safe_load(SCHEMA.read_text())
    definitions = document["definitions"]
    strategies = "|".join(STRATEGIES)
    definitions["system"]["pattern"] = f"^({strategies})-(bitext|mono|both)$"
    definitions["finetuning_labels"]["enum"] = [name for name in STRATEGIES if not STRATEGIES[name].needs_reference]
    definitions["scorer"]["properties"]["kind"]["enum"] = list(KINDS)
    definitions["scorer"]["if"]["properties"]["kind"]["enum"] = [name for name in KINDS if KINDS[name].needs_model]
    definitions["objective_student"]["properties"]["objective"]["enum"] = list(objectives.OBJECTIVES)
    definitions["objective_student"]["properties"]["recipe"]["enum"] = list(objectives.RECIPES)
    document["properties"]["teacher"]["properties"]["family"]["enum"] = ["auto", *families.FAMILIES]
    # a corpus extension: its name for data.source, its own data.<name> block
    data = document["properties"]["data"]["properties"]
    data["source"]["enum"] = list(READERS)
    for name in READERS:
        data.setdefault(name, {"type": "object"})
    # an extension's own keys, typed by their defaults (objectives.check refuses them on other objectives)
    properties = definitions["objective_student"]["properties"]
    json_type = {bool: "boolean", int: "number", float: "number", str: "string"}
    for _, objective in objectives.OBJECTIVES.items():
        for key, default in objective.keys.items():
            properties.setdefault(key, {"type": json_type.get(type(default), "object")})
    return document


@contextlib.contextmanager
def schema_file():
    """`schema()` in a temporary file, for snakemake.utils.validate (which reads a path)."""
    with tempfile.NamedTemporaryFile("w", prefix="mtdistill-schema.", suffix=".json") as file:
        json.dump(schema(), file)
        file.flush()
        yield file.name


class Plan(Layout):
    """The plan of one (validated) config: Layout's stages, then labels, students, evaluation, report."""

    # --- labels ----------------------------------------------------------------------------------
    def label_inputs(self, round, strategy: str, set_name: str) -> dict:
        inputs = {"sentences": f"results/data/{set_name}.parquet",
                  # ref too: its diagnostics compare the references with the teacher's top-1
                  "nbest": self.nbest_shards(round, set_name)}
        if "reranker" in STRATEGIES[strategy].inputs:
            inputs["feature_list"] = selected_features_list(round, set_name)
            inputs["weights"] = f"results/round{round}/reranker/weights.json"
        if "mbr" in STRATEGIES[strategy].inputs:
            inputs["features"] = self.feature_shards(round, set_name, self.mbr_scorers[:1])
        return inputs

    def mbr_option(self, strategy: str) -> str:
        if "mbr" not in STRATEGIES[strategy].inputs:
            return ""
        return f"--mbr-feature {self.mbr_scorers[0]}_{self.config['reranker']['mbr_utility']}"

    def label_filter_options(self) -> str:
        """The degenerate-hypothesis filter every n-best strategy applies, and Seq-Inter's candidates."""
        thresholds = self.config["labels"]["filter"]
        copies = "--drop-source-copies" if thresholds["drop_source_copies"] else "--keep-source-copies"
        values = {k: v for k, v in thresholds.items() if k != "drop_source_copies"}
        seqinter = {f"seqinter_{k}": v for k, v in self.config["labels"]["seqinter"].items()}
        return f"{cli_options(values)} {copies} {cli_options(seqinter)}"

    def system_labels(self, round, system: str) -> list[str]:
        """The label files of a student `<strategy>-<transfer>` (or a replica of it)."""
        strategy, transfer = base_system(system).split("-")
        return label_files(round, strategy, COMPOSITIONS[transfer])

    def system_seed(self, system: str) -> int:
        """A replica's own seed, else the config's."""
        return int(system.split(".seed")[1]) if ".seed" in system else self.config["seed"]

    # --- students --------------------------------------------------------------------------------
    @property
    def own_vocabulary(self) -> bool:
        """Whether the students get a SentencePiece vocabulary of their own (student.vocabulary). auto: when
        the teacher is not a Marian model, whose vocabulary alone has the layout students need (<pad> last)."""
        choice = self.config["student"]["vocabulary"]
        return not self.marian_teacher if choice == "auto" else choice == "own"

    def vocabulary_reason(self) -> str:
        """Why the students have the vocabulary they have, for the errors that follow from it."""
        choice = self.config["student"]["vocabulary"]
        if choice != "auto":
            return f"student.vocabulary is {choice}"
        return f"student.vocabulary auto: the teacher is {'' if self.marian_teacher else 'not '}a Marian model"

    def student_tokenizer(self, round, system: str) -> str:
        """The tokenizer a student built from scratch starts from: the teacher's, or its own on the labels of
        `system` (a replica shares its system's)."""
        return student_tokenizer_dir(round, base_system(system)) if self.own_vocabulary else TEACHER

    def student_inputs(self, round, system: str) -> dict:
        """A cross-entropy student's labels, dev set and tokenizer, and the teacher it copies weights from."""
        inputs = {"labels": self.system_labels(round, system), "dev": "results/data/dev.parquet",
                  "tokenizer": self.student_tokenizer(round, system)}
        if self.config["student"]["init"] != "none":
            inputs["teacher"] = TEACHER
        return inputs

    def student_init_option(self) -> str:
        """From scratch, or from the teacher's embeddings and its bottom or spaced layers (student.init)."""
        if self.config["student"]["init"] == "none":
            return ""
        return f"--init-from-teacher {TEACHER} --init-layers {self.config['student']['init']}"

    def objective_inputs(self, round, name: str) -> dict:
        """An objective student's labels, the student it starts from, its teacher and its top-k cache."""
        entry = self.objective_students[name]
        inputs = {"labels": self.system_labels(round, entry["labels"]), "dev": "results/data/dev.parquet",
                  "teacher": self.round_model("teacher", round)}
        if entry.get("init"):
            inputs["init"] = student_dir(round, entry["init"])
        else:  # built as the cross-entropy students: on their tokenizer (the teacher's: this round's)
            inputs["tokenizer"] = (self.student_tokenizer(round, entry["labels"]) if self.own_vocabulary
                                   else inputs["teacher"])
            if self.config["student"]["init"] != "none":
                inputs["init_teacher"] = TEACHER
        if entry.get("topk"):  # a word_kd key: the objective's keys are checked
            inputs["topk"] = f"results/round{round}/topk/{entry['labels']}.k{entry['topk']}.pt"
        if entry.get("k") == "auto":
            inputs["acceptance"] = acceptance_file(round, entry["init"])
        if uses_kb(entry["objective"]):
            inputs["kb"] = self.kb_shards(round, entry["labels"])
        return inputs

    def objective_options(self, round, name: str) -> str:
        """The objective and its hyper-parameters; the entry's `train` overrides student.train."""
        entry = self.objective_students[name]
        inputs = self.objective_inputs(round, name)
        train = objectives.train_settings(entry, self.config["student"]["train"])
        if "init" in inputs:
            start = f"--init {inputs['init']}"
        else:  # built like the cross-entropy students
            start = f"--tokenizer {inputs['tokenizer']} --arch {shlex.quote(as_json(self.config['student']['arch']))}"
            if "init_teacher" in inputs:
                start += f" --init-from-teacher {inputs['init_teacher']} --init-layers {self.config['student']['init']}"
        topk = f"--topk {inputs['topk']}" if "topk" in inputs else ""
        acceptance = f"--acceptance {inputs['acceptance']}" if "acceptance" in inputs else ""
        kb = f"--kb {' '.join(inputs['kb'])}" if "kb" in inputs else ""
        generation = self.length_options() if generates(entry["objective"]) else ""
        return (f"{start} --teacher {inputs['teacher']} {topk} {acceptance} {kb} {generation}"
                f" {cli_options({**objectives.options(entry), **train})}")

    def topk_labels(self, round, labels: str) -> dict:
        return {"labels": self.system_labels(round, labels), "teacher": self.round_model("teacher", round)}

    def topk_max_len(self) -> int:
        """Tokens per label the top-k cache holds: as many as any student trains on."""
        lengths = [self.config["student"]["train"]["max_len"]]
        lengths += [entry.get("train", {}).get("max_len", 0) for entry in self.objective_students.values()]
        return max(lengths)

    def length_options(self) -> str:
        """The output length limit of decoding, for every step that generates."""
        decode = self.config["decode"]
        return f"--max-len-a {decode['max_len_a']} --max-len-b {decode['max_len_b']}"

    def acceptance_inputs(self, round, labels: str) -> dict:
        return {"student": student_dir(round, labels), "teacher": self.round_model("teacher", round),
                "labels": self.system_labels(round, labels)}

    # --- retrieval-augmented KD: the teacher knowledge base, the kNN mixing weight --------------
    @property
    def retrieval_students(self) -> list[str]:
        """Objective students that learn from a knowledge base (and decode with it as <name>.knn)."""
        return [name for name, entry in self.objective_students.items() if uses_kb(entry["objective"])]

    @property
    def retrieval_systems(self) -> dict[str, str]:
        """<student>.knn -> <student>."""
        return {retrieval_system(name): name for name in self.retrieval_students}

    def kb_labels(self) -> list[str]:
        """The students whose labels a knowledge base is built on."""
        return sorted({self.objective_students[name]["labels"] for name in self.retrieval_students})

    def kb_sets(self, labels: str) -> list[str]:
        return COMPOSITIONS[labels.split("-")[1]]

    def kb_shards(self, round, labels: str) -> list[str]:
        """Shard directories of the knowledge base on a student's labels, sharded as decoding shards its sets."""
        return [kb_shard(round, labels, set_name, shard) for set_name in self.kb_sets(labels)
                for shard in range(self.config["decode"]["shards"][set_name])]

    def kb_projection_inputs(self, round, labels: str) -> dict:
        return {"labels": self.system_labels(round, labels), "teacher": self.round_model("teacher", round)}

    def kb_projection_options(self) -> str:
        """The contrastive head's settings (kb.projection); keys of the student's width, labels truncated
        as the students train on them."""
        return (f"--dim {self.config['student']['arch']['d_model']} --max-len {self.topk_max_len()}"
                f" {cli_options(self.config['kb']['projection'])}")

    def build_kb_inputs(self, round, labels: str, set_name: str) -> dict:
        return {"labels": label_files(round, labels.split("-")[0], [set_name])[0],
                "teacher": self.round_model("teacher", round), "projection": kb_projection(round, labels)}

    def build_kb_options(self, set_name: str) -> str:
        kb = self.config["kb"]
        index = {"index": kb["index"]}
        if kb["index"] == "ivfpq":
            ivfpq = kb["ivfpq"]
            index.update(nlist=ivfpq["nlist"], pq_m=ivfpq["m"], pq_bits=ivfpq["bits"], nprobe=ivfpq["nprobe"])
        return cli_options({"num_shards": self.config["decode"]["shards"][set_name], "values_k": kb["values_k"],
                            "max_len": self.topk_max_len(), **index})

    def retrieval_inputs(self, round, student: str) -> dict:
        entry = self.objective_students[student]
        return {"model": student_dir(round, student), "kb": self.kb_shards(round, entry["labels"]),
                "dev": "results/data/dev.parquet"}

    def retrieval_options(self, student: str) -> str:
        """The mixing weights tried on dev (the entry's betas, else its objective's)."""
        entry = self.objective_students[student]
        betas = entry.get("betas", objectives.OBJECTIVES[entry["objective"]].keys["betas"])
        return f"--betas {' '.join(map(str, betas))} {self.length_options()}"

    def evaluate_retrieval(self, round, system: str) -> list[str]:
        """A <student>.knn system's tuned mixing weight and knowledge base; none for other systems."""
        if system not in self.retrieval_systems:
            return []
        student = self.retrieval_systems[system]
        return [tuned_retrieval(round, student), *self.kb_shards(round, self.objective_students[student]["labels"])]

    def evaluate_retrieval_option(self, round, system: str) -> str:
        files = self.evaluate_retrieval(round, system)
        return f"--retrieval {files[0]} --kb {' '.join(files[1:])}" if files else ""

    def kb_files(self) -> list[str]:
        """Every knowledge-base shard of the rounds that train students (for the report)."""
        return [shard for r in self.student_rounds() for labels in self.kb_labels() for shard in self.kb_shards(r, labels)]

    def tuned_retrieval_files(self) -> list[str]:
        return [tuned_retrieval(r, s) for r in self.student_rounds() for s in self.retrieval_students]

    # --- evaluation ------------------------------------------------------------------------------
    def model_of(self, round, system: str) -> str:
        if system == "teacher":
            return self.round_model("teacher", round)
        return student_dir(round, self.retrieval_systems.get(system, system))

    def system_strategy(self, system: str) -> str:
        if system == "teacher":
            return "-"
        if system in self.retrieval_systems:
            return f"{self.system_strategy(self.retrieval_systems[system])}+knn"
        if system in self.objective_students:
            entry = self.objective_students[system]
            return f"{entry['labels'].split('-')[0]}+{entry['objective']}"
        return base_system(system).split("-")[0]

    def evaluate_translator(self, round, system: str):
        """The CTranslate2 conversion evaluation decodes with (backend.evaluate), else none."""
        return ct2_model(self.model_of(round, system)) if self.evaluates_on_ct2(system) else []

    def evaluates_on_ct2(self, system: str) -> bool:
        """backend.evaluate, but retrieval mixes the kNN distribution into Hugging Face's decoding
        steps, which CTranslate2 cannot do: <student>.knn systems decode on the hf path, and so does
        <student> itself, so that with and without retrieval differ in retrieval alone."""
        return self.uses_ct2("evaluate") and system not in {*self.retrieval_systems, *self.retrieval_students}

    def evaluate_backend_option(self, round, system: str) -> str:
        """--backend ctranslate2 --translator <dir> when evaluation decodes with CTranslate2."""
        if not self.evaluates_on_ct2(system):
            return ""
        return f"{self.backend_option('evaluate')} --translator {self.evaluate_translator(round, system)}"

    def evaluated_systems(self) -> list[tuple[int, str]]:
        """(round, system): the teacher of every round, the students of the rounds they train on."""
        return [(r, "teacher") for r in self.rounds] + [
            (r, system) for r in self.student_rounds()
            for system in [*self.students, *self.replicas, *self.objective_students, *self.retrieval_systems]]

    def comet_options(self) -> str:
        """--comet (and --comet-encoder) of rule evaluate_comet when evaluation.comet names a checkpoint."""
        evaluation = self.config["evaluation"]
        return " ".join(f"--{key.replace('_', '-')} {shlex.quote(evaluation[key])}"
                        for key in ("comet", "comet_encoder") if evaluation["comet"] and evaluation[key])

    def evaluation_file(self, round, system: str) -> str:
        """A system's evaluation as significance, figures and report read it: with evaluation.comet,
        the COMET step's copy (evaluate's JSON plus the COMET scores), else evaluate's own."""
        suffix = ".comet.json" if self.config["evaluation"]["comet"] else ".json"
        return f"results/round{round}/eval/{system}{suffix}"

    # --- the COMET environment -------------------------------------------------------------------
    def comet_key(self) -> str | None:
        """The first config key that makes the workflow run COMET (a comet scorer, evaluation.comet)."""
        for i, scorer in enumerate(self.config["scorers"]):
            if KINDS[scorer["kind"]].environment == "comet":
                return f"scorers[{i}].kind ({scorer['name']})"
        return "evaluation.comet" if self.config["evaluation"]["comet"] else None

    def runs_comet(self, scorer: str) -> bool:
        return KINDS[self.scorers[scorer]["kind"]].environment == "comet"

    def comet_python(self, conda: bool, basedir, environ=os.environ) -> str:
        """The interpreter (shell-quoted) of the rules that run COMET. Under --sdm conda the rule's own
        environment (envs/comet.yaml) is active and its `python` is COMET's; otherwise $MTDISTILL_COMET_PYTHON,
        else <workflow>/.venv-comet. A config that runs COMET without that interpreter is refused here,
        when the workflow is parsed, rather than by the first COMET job, hours into a run."""
        if conda:
            return "python"
        python = environ.get(COMET_PYTHON_VARIABLE) or str(Path(basedir) / COMET_VENV / "bin" / "python")
        key = self.comet_key()
        if key and not os.access(python, os.X_OK):
            where = f"${COMET_PYTHON_VARIABLE}" if environ.get(COMET_PYTHON_VARIABLE) else f"the default {COMET_VENV}"
            raise ValueError(f"config key {key}: COMET runs in its own environment, but its interpreter {python}"
                             f" ({where}) does not exist: run `make install`, which builds {COMET_VENV} from"
                             f" envs/comet.txt, or set {COMET_PYTHON_VARIABLE} (--sdm conda uses envs/comet.yaml)")
        return shlex.quote(python)

    def scorer_python(self, scorer: str, comet_python: str) -> str:
        return comet_python if self.runs_comet(scorer) else "python"

    def scorer_env(self, scorer: str) -> str:
        """The conda environment of a scoring job under --sdm conda."""
        return COMET_ENV if self.runs_comet(scorer) else MAIN_ENV

    def kd_baseline(self) -> str:
        """The sequence-level KD student the others are tested against: top1-both, else the first top1 one."""
        top1 = [system for system in self.students if system.split("-")[0] == "top1"]
        return "top1-both" if "top1-both" in top1 else (top1 or self.students)[0]

    def comparisons(self) -> list[tuple[str, str]]:
        """(system, baseline) pairs the paired bootstrap tests: evaluation.comparisons, else every
        system against the sequence-level KD student."""
        configured = self.config["evaluation"]["comparisons"]
        if configured:
            return [(pair["system"], pair["baseline"]) for pair in configured]
        systems = ["teacher", *self.students, *self.replicas, *self.objective_students]
        return ([(system, self.kd_baseline()) for system in systems if system != self.kd_baseline()]
                + [(knn, student) for knn, student in self.retrieval_systems.items()])

    def comparison_options(self) -> str:
        return " ".join(f"{system}:{baseline}" for system, baseline in self.comparisons())

    def round_evaluations(self, round) -> dict:
        """Evaluations of every system of a round (teacher and students) and the test set."""
        return {"evaluations": [self.evaluation_file(r, s) for r, s in self.evaluated_systems() if r == int(round)],
                "test": "results/data/test.parquet"}

    # --- report and figures ----------------------------------------------------------------------
    def evaluation_files(self) -> list[str]:
        return [self.evaluation_file(r, s) for r, s in self.evaluated_systems()]

    def diagnostics_files(self) -> list[str]:
        return [f"results/round{r}/reranker/diagnostics.json" for r in self.rounds]

    def significance_files(self) -> list[str]:
        """Paired bootstrap against the KD baseline, in the rounds that train students."""
        return [f"results/round{r}/eval/significance.json" for r in self.student_rounds()]

    def acceptance_files(self) -> list[str]:
        """The SKD acceptance sweeps of the rounds that train students (entries with `k: auto`)."""
        students = {entry["init"] for entry in self.objective_students.values() if entry.get("k") == "auto"}
        return [acceptance_file(r, s) for r in self.student_rounds() for s in sorted(students)]

    def label_diagnostics_files(self) -> list[str]:
        """Diagnostics of every label file a cross-entropy student learns from."""
        files = [path.replace(".parquet", ".json") for r in self.student_rounds() for system in self.students
                 for path in self.system_labels(r, system)]
        return list(dict.fromkeys(files))

    def trained_models(self) -> list[str]:
        """Every model the workflow builds: teacher, helpers in use, fine-tuned decoders, students."""
        finetuned = [self.round_model(name, r) for r in self.rounds[1:] for name in self.finetuned]
        students = [self.model_of(r, s) for r, s in self.evaluated_systems() if s != "teacher"]
        return list(dict.fromkeys([TEACHER, *map(self.model_path, self.helpers_in_use()), *finetuned, *students]))

    def figure_names(self) -> list[str]:
        """The report's figures (mtdistill.figures); the SKD acceptance last, and only if a student drafts."""
        from .figures import FIGURES  # matplotlib: only when the workflow is built, not for every import

        drafts = any(generates(entry["objective"]) for entry in self.objective_students.values())
        return [name for name in FIGURES if name != "skd_acceptance"] + (["skd_acceptance"] if drafts else [])

    def figure_files(self) -> list[str]:
        return [f"results/figures/{name}.png" for name in self.figure_names()]

    def figure_inputs(self) -> dict:
        return {"evaluations": self.evaluation_files(), "significance": self.significance_files(),
                "diagnostics": self.diagnostics_files(), "models": self.trained_models(),
                "labels": self.label_diagnostics_files()}

    def report_inputs(self) -> dict:
        return {"evaluations": self.evaluation_files(),
                "models": [self.model_of(r, s) for r, s in self.evaluated_systems()],
                "diagnostics": self.diagnostics_files(),
                "costs": [f"results/round{r}/features/costs.json" for r in self.rounds],
                "significance": self.significance_files(), "figures": self.figure_files(),
                "acceptance": self.acceptance_files(), "labels": self.label_diagnostics_files(),
                "retrieval": self.tuned_retrieval_files(), "kb": self.kb_files()}

    def report_options(self) -> str:
        """The report's note line and the names of its findings."""
        evaluation = self.config["evaluation"]
        return (f"--note {shlex.quote(evaluation['note'])}"
                f" --findings {shlex.quote(as_json(evaluation['comparisons']))}")

    # --- checks ----------------------------------------------------------------------------------
    def check(self) -> None:
        """The config errors the schema cannot state, each a ValueError naming its config key."""
        scorers = self.config["scorers"]
        for i, scorer in enumerate(scorers):
            self.check_scorer_keys(i, scorer)
        for scorer in scorers:
            if scorer["kind"] == "lm" and scorer.get("model") == "lm" and "arch" not in self.config["lm"]:
                raise ValueError(f"config key lm.arch: scorer {scorer['name']} uses the workflow's LM")
        if len(self.scorers) < len(scorers):
            raise ValueError("config key scorers: scorer names must be unique")
        if not self.reranker_scorers():
            raise ValueError("config key scorers: no scorer runs on every set, so nothing can rerank")
        for i, system in enumerate(self.students):
            strategy, transfer = system.split("-")
            missing = set(COMPOSITIONS[transfer]) - set(self.transfer)
            if missing:
                raise ValueError(f"config key student.systems[{i}] ({system}): transfer set {', '.join(missing)}"
                                 " not in transfer_sets")
            if STRATEGIES[strategy].needs_reference and transfer != "bitext":
                raise ValueError(f"config key student.systems[{i}] ({system}): strategy {strategy} needs references,"
                                 " so bitext only")
        self.check_students()
        self.check_teacher()
        self.search_options()  # decode.sampling without decode.search sample is refused
        mbr = [s for s in self.student_strategies() | {self.config["self_training"]["labels"]}
               if "mbr" in STRATEGIES[s].inputs]
        if mbr and not self.mbr_scorers:
            raise ValueError(f"config key student.systems: strategy {mbr[0]} needs a scorer of kind {MBR_KIND}")
        evaluation = self.config["evaluation"]
        if evaluation["comet_encoder"] and not evaluation["comet"]:
            raise ValueError("config key evaluation.comet_encoder: set, but evaluation.comet names no checkpoint")

    def check_scorer_keys(self, i: int, scorer: dict) -> None:
        """A scorer's optional keys (encoder, languages, prompt) only where its kind reads them; a causal_forced
        scorer's prompt keys as a causal teacher's are checked."""
        kind = KINDS[scorer["kind"]]
        for key in OPTIONAL_KEYS:
            if key in scorer and key not in kind.keys:
                raise ValueError(f"config key scorers[{i}].{key} ({scorer['name']}): kind {scorer['kind']} does not use it")
        if scorer["kind"] == "causal_forced":
            families.check(families.Profile.from_keys("causal", scorer), f"scorers[{i}]")

    def check_teacher(self) -> None:
        """The teacher's family keys (teacher_profile raises naming the key), and what only a Marian teacher
        supports yet."""
        family = self.teacher_profile.family
        if family == "marian":
            token_level = self.teacher_vocabulary_objectives()
            if self.teacher_profile.source_prefix and token_level:
                i, _, entry = token_level[0]
                raise ValueError(f"config key student.objectives[{i}] ({entry['name']}): {entry['objective']} gives the"
                                 " teacher the student's source tokens, which lack teacher.source_prefix; not supported yet")
            return
        for helper in ("r2l", "backward", "lm"):
            if self.config[helper].get("init_from_teacher"):
                raise ValueError(f"config key {helper}.init_from_teacher: a {family} teacher's weights do not fit"
                                 " the helper's Marian layout and vocabulary")

    def check_students(self) -> None:
        """Objective students, replicas and comparisons name students of this run."""
        for i, entry in enumerate(self.objective_students.values()):
            for key in ("labels", "init"):
                if entry.get(key) and entry[key] not in self.students:
                    raise ValueError(f"config key student.objectives[{i}].{key} ({entry['name']}): {entry[key]} is not"
                                     " in student.systems")
            if entry.get("k") == "auto" and not entry.get("init"):
                raise ValueError(f"config key student.objectives[{i}].k ({entry['name']}): auto measures acceptance on"
                                 " the `init` student; set init")
        for i, system in enumerate(self.config["student"]["replicas"]["systems"]):
            if system not in self.students:
                raise ValueError(f"config key student.replicas.systems[{i}]: {system} is not in student.systems")
        self.check_vocabulary()
        kb = self.config["kb"]
        if "ivfpq" in kb and kb["index"] != "ivfpq":
            raise ValueError(f"config key kb.ivfpq: kb.index is {kb['index']}, which does not use it")
        if kb["index"] == "ivfpq" and "ivfpq" not in kb:
            raise ValueError("config key kb.ivfpq: kb.index ivfpq needs it (`ivfpq: {}` takes the defaults)")
        known = {"teacher", *self.students, *self.replicas, *self.objective_students, *self.retrieval_systems}
        for i, pair in enumerate(self.config["evaluation"]["comparisons"]):
            for key in ("system", "baseline"):
                if pair[key] not in known:
                    raise ValueError(f"config key evaluation.comparisons[{i}].{key}: {pair[key]} is not a system"
                                     " of this run")

    def check_vocabulary(self) -> None:
        """student.vocabulary and student.vocab_size, and what needs the teacher's vocabulary: copying its
        weights (student.init) and the objectives that compare distributions with it token by token."""
        student = self.config["student"]
        family = self.teacher_profile.family
        if student["vocabulary"] == "teacher" and not self.marian_teacher:
            raise ValueError(f"config key student.vocabulary: teacher, but a {family} teacher's vocabulary is not in"
                             " the layout students need (a Marian vocabulary, <pad> its last id); use own or auto")
        if not self.own_vocabulary:
            if "vocab_size" in student:
                raise ValueError(f"config key student.vocab_size: the students share the teacher's vocabulary"
                                 f" ({self.vocabulary_reason()}), whose size is the teacher's; remove it, or set"
                                 " student.vocabulary own")
            return
        if "vocab_size" not in student:
            raise ValueError(f"config key student.vocab_size: the students get a vocabulary of their own"
                             f" ({self.vocabulary_reason()}): give its size (e.g. 8000)")
        if student["init"] != "none":
            raise ValueError(f"config key student.init: {student['init']} copies the teacher's embeddings and layers,"
                             f" which needs its vocabulary, but the students have their own ({self.vocabulary_reason()});"
                             " set none")
        token_level = self.teacher_vocabulary_objectives()
        if token_level:
            i, key, entry = token_level[0]
            raise ValueError(f"config key student.objectives[{i}].{key} ({entry['name']}): {entry['objective']}"
                             " compares the student's next-token distributions with the teacher's, which needs"
                             f" the teacher's vocabulary, but the students have their own ({self.vocabulary_reason()})")

    def teacher_vocabulary_objectives(self) -> list[tuple[int, str, dict]]:
        """(index, the key that names the objective, the expanded entry) of the student.objectives entries whose
        objective needs the teacher's vocabulary (token-level KD)."""
        return [(i, "objective" if "objective" in entry else "recipe", expanded)
                for i, entry in enumerate(self.config["student"]["objectives"])
                if objectives.OBJECTIVES[(expanded := objectives.expand(entry))["objective"]].needs_teacher_vocabulary]
