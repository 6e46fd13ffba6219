"""The first half of the workflow's plan (mtdistill.plan): the path layout, the model roles and the
command-line options of the stages before the labels (helpers, fine-tuning, decoding, scoring).
"""

from __future__ import annotations

import functools
import json
import re
import shlex

from . import families, objectives
from .labels import STRATEGIES
from .scorers import KINDS, OPTIONAL_KEYS

TEACHER = "results/models/teacher"
# The reranker is tuned on `tune` and diagnosed on `dev`; the transfer sets get labels.
HELD_OUT = ["tune", "dev"]
# Models the workflow trains (or takes from `pretrained`) besides the teacher and students.
HELPERS = ("r2l", "backward", "lm")
# A student learns from the labels of one strategy on bitext, mono or both transfer sets.
COMPOSITIONS = {"bitext": ["bitext"], "mono": ["mono"], "both": ["bitext", "mono"]}
# The scorer kind whose consensus features the strategies with input "mbr" pick by.
MBR_KIND = "mbr"


def as_json(value) -> str:
    return json.dumps(value, sort_keys=True)


def cli_options(values: dict) -> str:
    return " ".join(f"--{key.replace('_', '-')} {value}" for key, value in values.items())


def quoted_options(values: dict) -> str:
    """Command-line options of config values that may hold any text (a prompt, a stop token): shell-quoted;
    true is a bare flag, a list several values, an empty or false value no option."""
    options = []
    for key, value in values.items():
        flag = f"--{key.replace('_', '-')}"
        if value is True:
            options.append(flag)
        elif isinstance(value, (list, tuple)) and value:
            options.append(f"{flag} {' '.join(map(shlex.quote, value))}")
        elif isinstance(value, str) and value:
            options.append(f"{flag} {shlex.quote(value)}")
    return " ".join(options)


def external_name(model: str) -> str:
    """A path or Hugging Face id from the config, as a directory name under results/ct2/external."""
    return re.sub(r"[^A-Za-z0-9]+", "_", model).strip("_")


def ct2_model(model: str) -> str:
    """Where the CTranslate2 conversion of `model` lives: the results/ tree mirrored under
    results/ct2/, or results/ct2/external/<name> for a path or id from the config."""
    if model.startswith("results/"):
        return f"results/ct2/{model.removeprefix('results/')}"
    return f"results/ct2/external/{external_name(model)}"


def base_system(system: str) -> str:
    """`<strategy>-<transfer>` of a student, without its `.seed<N>` replica suffix."""
    return system.split(".seed")[0]


def label_files(round, strategy: str, sets) -> list[str]:
    return [f"results/round{round}/labels/{strategy}/{s}.parquet" for s in sets]


def nbest_shard(round, set_name: str, shard, direction: str | None = None) -> str:
    where = f"{set_name}/{direction}" if direction else set_name
    return f"results/round{round}/nbest/{where}/{shard}.parquet"


def acceptance_file(round, student: str) -> str:
    return f"results/round{round}/skd/acceptance.{student}.json"


def selected_features_list(round, set_name: str) -> str:
    return f"results/round{round}/features/{set_name}/selected.json"


def kb_projection(round, labels: str) -> str:
    return f"results/round{round}/kb/{labels}/projection.pt"


def kb_shard(round, labels: str, set_name: str, shard) -> str:
    return f"results/round{round}/kb/{labels}/{set_name}.{shard}"


def tuned_retrieval(round, student: str) -> str:
    return f"results/round{round}/retrieval/{student}.json"


def student_dir(round, name: str) -> str:
    return f"results/round{round}/students/{name}"


class Layout:
    """Paths, model roles and options of one (validated) config, up to the reranker."""

    def __init__(self, config: dict):
        self.config = config
        student = config["student"]
        # students trained with another objective than cross-entropy, recipes expanded
        self.objective_students = {
            entry["name"]: objectives.check(entry, f"student.objectives[{i}]")
            for i, entry in enumerate(student.get("objectives", []))}
        self.scorers = {scorer["name"]: scorer for scorer in config["scorers"]}
        self.transfer = config["transfer_sets"]
        self.sets = HELD_OUT + self.transfer
        # decoders whose n-best lists are merged; the first one's ranking leads (hyp_id 0 = its best)
        self.directions = ["l2r", "r2l"] if config["r2l"]["decode"] else ["l2r"]
        # self-training rounds fine-tune the decoders on the previous round's labels
        self.finetuned = ["teacher", "r2l"] if config["r2l"]["decode"] else ["teacher"]
        self.rounds = list(range(config["self_training"]["rounds"]))
        self.last_round = self.rounds[-1]
        self.students = student["systems"]
        # students trained again with other seeds (seed spread): <system>.seed<N> beside <system>
        self.replicas = [f"{system}.seed{seed}" for system in student["replicas"]["systems"]
                         for seed in student["replicas"]["seeds"]]
        self.mbr_scorers = [name for name, s in self.scorers.items() if s["kind"] == MBR_KIND]

    # --- backends and model roles -------------------------------------------------------------
    def uses_ct2(self, step: str) -> bool:
        """Whether `step` (decode, score, evaluate) runs on CTranslate2 conversions."""
        return self.config["backend"][step] == "ctranslate2"

    def backend_model(self, step: str, model: str) -> str:
        return ct2_model(model) if self.uses_ct2(step) else model

    def backend_option(self, step: str) -> str:
        if not self.uses_ct2(step):
            return "--backend hf"
        return f"--backend ctranslate2 --compute-type {self.config['backend']['compute_type']}"

    def external_models(self) -> dict:
        """Seq2seq models the config names by path or id (pretrained helpers, scorer models) by directory name."""
        named = [self.config[h]["pretrained"] for h in ("r2l", "backward")]
        named += [s["model"] for s in self.config["scorers"] if KINDS[s["kind"]].seq2seq]
        found = {}
        for model in named:
            if model and model not in {"teacher", *HELPERS}:
                name = external_name(model)
                if found.setdefault(name, model) != model:
                    raise ValueError(f"config: {found[name]!r} and {model!r} would share results/ct2/external/{name}")
        return found

    def ct2_source_model(self, model: str) -> str:
        """The Hugging Face model a conversion (results/ct2/<model>) reads: a workflow model, or a path or id."""
        if model.startswith("external/"):
            return self.external_models()[model.removeprefix("external/")]
        return f"results/{model}"

    def model_path(self, name: str) -> str:
        """A model the config names: the workflow's teacher or a helper by role, else a path or id."""
        if name == "teacher":
            return TEACHER
        if name in HELPERS:
            return self.config[name]["pretrained"] or f"results/models/{name}"
        return name

    def round_model(self, name: str, round) -> str:
        """A model as round `round` uses it: the decoders are fine-tuned anew every round after 0."""
        if int(round) > 0 and name in self.finetuned:
            return f"results/round{round}/models/{name}"
        return self.model_path(name)

    def built_here(self, name: str, round=0) -> bool:
        """Whether a rule of this workflow produces the model `name` refers to."""
        if int(round) > 0 and name in self.finetuned:
            return True
        return name == "teacher" or (name in HELPERS and not self.config[name]["pretrained"])

    @functools.cached_property
    def teacher_profile(self) -> families.Profile:
        """The teacher's family and language keys, checked: Marian for a teacher trained here; a pretrained
        one's detected from its config.json unless teacher.family names it."""
        teacher = self.config["teacher"]
        if not teacher["pretrained"]:
            for key in ("family", *families.KEYS):
                if teacher.get(key) and teacher[key] not in ("auto", "marian"):
                    raise ValueError(f"config key teacher.{key}: the teacher trained here (teacher.pretrained is"
                                     " empty) is a Marian model with the workflow's vocabulary, which does not use it")
            return families.Profile()
        profile = families.Profile.from_keys(families.resolve(teacher["family"], teacher["pretrained"]), teacher)
        families.check(profile)
        return profile

    @property
    def marian_teacher(self) -> bool:
        """Whether the teacher is a Marian model, whose vocabulary and layout students and helpers can share."""
        return self.teacher_profile.family == "marian"

    def teacher_import_options(self) -> str:
        """The pretrained teacher's family and language keys, as import_teacher saves them beside it."""
        profile = self.teacher_profile
        return f"--family {profile.family} {quoted_options(profile.given())}".strip()

    def search_options(self) -> str:
        """decode.search: the beam's n-best lists, or seeded draws with decode.sampling's settings."""
        decode = self.config["decode"]
        if decode["search"] == "beam":
            if "sampling" in decode:
                raise ValueError("config key decode.sampling: decode.search is beam, which does not sample")
            return ""
        return f"--search sample --seed {self.config['seed']} {cli_options(decode.get('sampling', {}))}"

    def helper_tokenizer(self) -> str:
        """Helpers share the teacher's vocabulary when it is a Marian one (trained here or pretrained); the
        helpers of other families' teachers get the tokenizer trained on the bitext."""
        return TEACHER if self.config["teacher"]["pretrained"] and self.marian_teacher else "results/tokenizer"

    def helpers_in_use(self) -> list[str]:
        """Helper models a rule trains because decoding or a scorer uses them."""
        used = {scorer.get("model") for scorer in self.config["scorers"]}
        if self.config["r2l"]["decode"]:
            used.add("r2l")
        return [name for name in HELPERS if name in used and self.built_here(name)]

    # --- training the teacher's helpers and fine-tuning the decoders ----------------------------
    def data_spec(self) -> str:
        return as_json({**self.config["data"], "seed": self.config["seed"]})

    def train_options(self, section: str) -> str:
        """Training hyper-parameters of config[section]['train'] as command-line options."""
        return cli_options(self.config[section]["train"])

    def helper_inputs(self, helper: str) -> dict:
        inputs = {"train": ["results/data/train.parquet"], "dev": "results/data/dev.parquet",
                  "tokenizer": self.helper_tokenizer()}
        if helper == "lm":  # and the monolingual target text (data.bible.mono_target, data.files.mono_target)
            inputs["train"].append("results/data/lm.parquet")
        if self.config[helper].get("init_from_teacher"):
            inputs["teacher"] = TEACHER
        return inputs

    def helper_options(self, helper: str) -> str:
        """Architecture, direction and training options of a helper; teacher.train fills the gaps."""
        settings = self.config[helper]
        train = {**self.config["teacher"]["train"], **settings["train"], "select_by": "loss"}
        arch = settings.get("arch", self.config["teacher"]["arch"])
        mode = {"r2l": "--direction r2l", "backward": "--direction backward", "lm": "--task lm"}
        init = f"--init-from-teacher {TEACHER}" if settings.get("init_from_teacher") else ""
        return f"{mode[helper]} --arch {shlex.quote(as_json(arch))} {init} {cli_options(train)}"

    def finetune_inputs(self, round, finetuned: str) -> dict:
        """The previous round's model and its labels for the fine-tuning strategy."""
        previous = int(round) - 1
        settings = self.config["self_training"]
        inputs = {"labels": label_files(previous, settings["labels"], self.transfer), "dev": "results/data/dev.parquet"}
        if settings["mix_bitext"]:
            inputs["mix"] = "results/data/train.parquet"
        if self.built_here(finetuned, previous):
            inputs["model"] = self.round_model(finetuned, previous)
        return inputs

    def finetune_options(self, round, finetuned: str) -> str:
        """Start from the previous round's model, optionally beside the original bitext, and keep it
        when no checkpoint beats it on dev (the R2L model by dev loss: its dev BLEU would be reversed)."""
        settings = self.config["self_training"]
        train = {**self.config["teacher"]["train"], **settings["train"], "epochs": settings["epochs"],
                 "select_by": settings["select_by"] if finetuned == "teacher" else "loss"}
        direction = "l2r" if finetuned == "teacher" else "r2l"
        model = shlex.quote(self.round_model(finetuned, int(round) - 1))
        mix = f"--mix {self.finetune_inputs(round, finetuned)['mix']}" if settings["mix_bitext"] else ""
        keep = "--eval-at-start" if settings["keep_better"] else ""
        return f"--init {model} --direction {direction} {mix} {keep} {cli_options(train)}"

    # --- what each round produces ------------------------------------------------------------------
    def student_rounds(self) -> list[int]:
        return self.rounds if self.config["student"]["every_round"] else [self.last_round]

    def student_strategies(self) -> set[str]:
        return {system.split("-")[0] for system in self.students}

    def round_strategies(self, round) -> set[str]:
        """Label strategies a round must produce: its students' and the next round's fine-tuning labels."""
        strategies = self.student_strategies() if int(round) in self.student_rounds() else set()
        if int(round) < self.last_round:
            strategies.add(self.config["self_training"]["labels"])
        return strategies

    # --- decoding and scoring -----------------------------------------------------------------
    def decoder_model(self, round, direction: str) -> str:
        return self.backend_model("decode", self.round_model(decoder_name(direction), round))

    def decoder_inputs(self, round, set_name: str, direction: str) -> dict:
        inputs = {"sentences": f"results/data/{set_name}.parquet"}
        if self.uses_ct2("decode") or self.built_here(decoder_name(direction), round):
            inputs["model"] = self.decoder_model(round, direction)
        return inputs

    def direction_nbest(self, round, set_name: str, shard) -> dict:
        return {direction: nbest_shard(round, set_name, shard, direction) for direction in self.directions}

    def merge_options(self, round, set_name: str, shard) -> str:
        return " ".join(f"{d}={path}" for d, path in self.direction_nbest(round, set_name, shard).items())

    def scorer_sets(self, name: str) -> list[str]:
        return self.scorers[name].get("sets") or self.sets

    def reranker_scorers(self) -> list[str]:
        """Scorers that run on every set: only their features can rank transfer hypotheses."""
        return [name for name in self.scorers if set(self.sets) <= set(self.scorer_sets(name))]

    def nbest_shards(self, round, set_name: str) -> list[str]:
        return [nbest_shard(round, set_name, shard) for shard in range(self.config["decode"]["shards"][set_name])]

    def feature_shards(self, round, set_name: str, scorers) -> list[str]:
        """Feature tables of the given scorers on a set (those that run on it)."""
        return [f"results/round{round}/features/{set_name}/{scorer}/{shard}.parquet"
                for scorer in scorers if set_name in self.scorer_sets(scorer)
                for shard in range(self.config["decode"]["shards"][set_name])]

    def set_scorers(self, round, set_name: str, selected: list[str]) -> list[str]:
        """Every scorer on the held-out sets; on transfer sets the `selected` ones (and MBR for its labels)."""
        if set_name in HELD_OUT:
            return list(self.scorers)
        mbr = self.mbr_scorers[:1] if any("mbr" in STRATEGIES[s].inputs for s in self.round_strategies(round)) else []
        return selected + [name for name in mbr if name not in selected]

    def scorer_costs(self, round, selected: list[str]) -> list[str]:
        """Cost records of every scoring job of a round."""
        return [path.replace(".parquet", ".cost.json") for s in self.sets
                for path in self.feature_shards(round, s, dict.fromkeys(self.set_scorers(round, s, selected)))]

    def scorer_uses_ct2(self, scorer: str) -> bool:
        return KINDS[self.scorers[scorer]["kind"]].seq2seq and self.uses_ct2("score")

    def scorer_model(self, round, scorer: str) -> str:
        """The model a scorer loads: a workflow model by role name, a path or id, or its conversion."""
        model = self.round_model(self.scorers[scorer]["model"], round)
        return ct2_model(model) if self.scorer_uses_ct2(scorer) else model

    def scorer_inputs(self, round, set_name: str, shard, scorer: str) -> dict:
        """The n-best shard, its sentences and the scorer's model when this workflow builds it."""
        inputs = {"nbest": nbest_shard(round, set_name, shard), "sources": f"results/data/{set_name}.parquet"}
        model = self.scorers[scorer].get("model")
        if model and (self.scorer_uses_ct2(scorer) or self.built_here(model, round)):
            inputs["model"] = self.scorer_model(round, scorer)
        return inputs

    def scorer_model_option(self, round, scorer: str) -> str:
        """--model for scorers that name one, the optional keys their kind reads (encoder, languages, prompt),
        and the backend of seq2seq kinds."""
        settings = self.scorers[scorer]
        options = [f"--model {shlex.quote(self.scorer_model(round, scorer))}"] if settings.get("model") else []
        options.append(quoted_options({key: settings[key] for key in OPTIONAL_KEYS if key in settings}))
        if KINDS[settings["kind"]].seq2seq:
            options.append(self.backend_option("score"))
        return " ".join(option for option in options if option)

    def reranker_inputs(self, round) -> dict:
        inputs = {}
        for set_name in HELD_OUT:
            inputs[f"{set_name}_nbest"] = self.nbest_shards(round, set_name)
            inputs[f"{set_name}_features"] = self.feature_shards(round, set_name, self.reranker_scorers())
            inputs[f"{set_name}_references"] = f"results/data/{set_name}.parquet"
        return inputs


def decoder_name(direction: str) -> str:
    return "teacher" if direction == "l2r" else "r2l"
