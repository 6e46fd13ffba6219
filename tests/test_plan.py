"""The workflow's plan (mtdistill.plan) on its own, without a dry run: paths, model roles, options,
the report's file lists, every config check, and the schema against the registries."""

from __future__ import annotations

import re
import shlex

import jsonschema
import pytest
import yaml

from helpers import plan_of, tiny_config, validated
from mtdistill import objectives, plan
from mtdistill.labels import STRATEGIES
from mtdistill.scorers import KINDS


@pytest.fixture
def config():
    return tiny_config()


@pytest.fixture
def tiny(config):
    return plan_of(config)


def option(text: str, name: str) -> str:
    words = shlex.split(text)
    return words[words.index(name) + 1]


def test_model_roles_and_rounds(config, tiny):
    assert tiny.model_path("teacher") == plan.TEACHER == "results/models/teacher"
    assert tiny.model_path("backward") == "results/models/backward" and tiny.model_path("/x/opus") == "/x/opus"
    # the decoders are fine-tuned anew every round after 0; other models stay
    assert tiny.round_model("teacher", 0) == plan.TEACHER
    assert tiny.round_model("r2l", "1") == "results/round1/models/r2l"
    assert tiny.round_model("backward", 1) == "results/models/backward"
    assert tiny.built_here("teacher") and tiny.built_here("lm") and not tiny.built_here("/x/opus")
    config["backward"]["pretrained"] = "/models/backward"
    config["r2l"]["decode"] = False
    other = plan_of(config)
    assert other.model_path("backward") == "/models/backward" and not other.built_here("backward")
    assert other.round_model("r2l", 1) == "results/models/r2l"  # not a decoder any more: not fine-tuned
    assert other.directions == ["l2r"] and other.finetuned == ["teacher"]
    assert other.helpers_in_use() == ["r2l", "lm"]  # the r2l and lm scorers still use theirs


def test_paths_of_decoding_scoring_and_labels(tiny):
    assert tiny.sets == ["tune", "dev", "bitext", "mono"] and tiny.rounds == [0, 1]
    assert tiny.nbest_shards(1, "bitext") == ["results/round1/nbest/bitext/0.parquet", "results/round1/nbest/bitext/1.parquet"]
    assert tiny.direction_nbest(0, "mono", 0) == {"l2r": "results/round0/nbest/mono/l2r/0.parquet",
                                                  "r2l": "results/round0/nbest/mono/r2l/0.parquet"}
    assert tiny.merge_options(0, "mono", 0) == ("l2r=results/round0/nbest/mono/l2r/0.parquet"
                                                " r2l=results/round0/nbest/mono/r2l/0.parquet")
    assert tiny.decoder_inputs(1, "dev", "r2l") == {"sentences": "results/data/dev.parquet",
                                                    "model": "results/round1/models/r2l"}
    assert tiny.scorer_inputs(0, "tune", 0, "lm")["model"] == "results/models/lm"
    assert "model" not in tiny.scorer_inputs(0, "tune", 0, "length")
    assert tiny.system_labels(1, "top1-both.seed7") == ["results/round1/labels/top1/bitext.parquet",
                                                        "results/round1/labels/top1/mono.parquet"]
    rerank = tiny.label_inputs(0, "rerank", "mono")
    assert rerank["weights"] == "results/round0/reranker/weights.json"
    assert rerank["feature_list"] == "results/round0/features/mono/selected.json"
    assert tiny.label_inputs(1, "mbr", "bitext")["features"] == ["results/round1/features/bitext/mbr/0.parquet",
                                                                 "results/round1/features/bitext/mbr/1.parquet"]
    assert set(tiny.label_inputs(1, "ref", "bitext")) == {"sentences", "nbest"}
    assert tiny.mbr_option("mbr") == "--mbr-feature mbr_chrf" and tiny.mbr_option("top1") == ""


def test_scorers_limited_to_sets_stay_out_of_the_reranker_and_transfer_sets_get_the_selected(config):
    config["scorers"].append({"name": "comet_ref", "kind": "comet", "model": "/models/comet", "sets": ["tune"]})
    tiny = plan_of(config)
    assert "comet_ref" not in tiny.reranker_scorers()
    assert tiny.feature_shards(0, "bitext", ["comet_ref", "length"]) == [
        "results/round0/features/bitext/length/0.parquet", "results/round0/features/bitext/length/1.parquet"]
    assert tiny.set_scorers(0, "tune", ["teacher"]) == list(tiny.scorers)
    # round 0 labels only the fine-tuning strategy (rerank); round 1's mbr students need the MBR scorer
    assert tiny.set_scorers(0, "mono", ["teacher", "lm"]) == ["teacher", "lm"]
    assert tiny.set_scorers(1, "mono", ["teacher", "lm"]) == ["teacher", "lm", "mbr"]
    assert tiny.set_scorers(1, "mono", ["mbr", "lm"]) == ["mbr", "lm"]
    costs = tiny.scorer_costs(1, ["teacher"])
    assert "results/round1/features/bitext/teacher/1.cost.json" in costs
    assert "results/round1/features/tune/comet_ref/0.cost.json" in costs
    assert not any("/bitext/lm/" in path for path in costs)


def test_ctranslate2_paths_and_backend_options(config):
    config["backend"] = {"decode": "ctranslate2", "score": "ctranslate2", "compute_type": "int8"}
    config["scorers"].append({"name": "opus", "kind": "forced_decoding", "model": "/models/opus-mt-de-en"})
    tiny = plan_of(config)
    assert tiny.decoder_model(1, "l2r") == "results/ct2/round1/models/teacher"
    assert tiny.scorer_model(0, "opus") == "results/ct2/external/models_opus_mt_de_en"
    assert tiny.scorer_model(0, "lm") == "results/models/lm"  # not a seq2seq kind: Hugging Face
    assert tiny.scorer_model_option(0, "teacher") == ("--model results/ct2/models/teacher"
                                                      " --backend ctranslate2 --compute-type int8")
    assert tiny.ct2_source_model("external/models_opus_mt_de_en") == "/models/opus-mt-de-en"
    assert tiny.ct2_source_model("round1/models/r2l") == "results/round1/models/r2l"
    assert tiny.evaluate_backend_option(1, "top1-both") == "" and tiny.evaluate_translator(1, "top1-both") == []
    config["scorers"].append({"name": "opus2", "kind": "backward", "model": "/models/opus_mt-de-en"})
    with pytest.raises(ValueError, match="would share results/ct2/external/models_opus_mt_de_en"):
        plan_of(config).external_models()


def test_helper_and_fine_tuning_options(config):
    config["backward"]["init_from_teacher"] = True
    tiny = plan_of(config)
    lm = tiny.helper_options("lm")
    assert lm.startswith("--task lm --arch ") and option(lm, "--select-by") == "loss"
    assert option(lm, "--max-steps") == "300" and option(lm, "--lr") == str(config["teacher"]["train"]["lr"])
    assert tiny.helper_inputs("lm")["train"] == ["results/data/train.parquet", "results/data/lm.parquet"]
    assert "--init-from-teacher results/models/teacher" in tiny.helper_options("backward")
    assert tiny.helper_inputs("backward")["teacher"] == plan.TEACHER
    teacher, r2l = tiny.finetune_options(1, "teacher"), tiny.finetune_options(1, "r2l")
    assert option(teacher, "--init") == plan.TEACHER and option(teacher, "--select-by") == "bleu"
    assert option(r2l, "--direction") == "r2l" and option(r2l, "--select-by") == "loss"
    assert "--mix results/data/train.parquet" in teacher and "--eval-at-start" in teacher
    assert option(teacher, "--epochs") == "1" and option(teacher, "--lr") == "0.001"
    inputs = tiny.finetune_inputs(1, "r2l")
    assert inputs["model"] == "results/models/r2l" and inputs["mix"] == "results/data/train.parquet"
    assert inputs["labels"] == ["results/round0/labels/rerank/bitext.parquet", "results/round0/labels/rerank/mono.parquet"]
    config["self_training"].update(mix_bitext=False, keep_better=False)
    plain = plan_of(config).finetune_options(1, "teacher")
    assert "--mix" not in plain and "--eval-at-start" not in plain


def test_objective_student_options(config):
    config["student"]["init"] = "spaced"
    config["student"]["systems"].append("top1-bitext")
    config["student"]["objectives"] += [{"name": "auto", "recipe": "skd", "k": "auto"},
                                        {"name": "scratch", "recipe": "supervised_kd"}]
    config["decode"].update(max_len_a=1.25, max_len_b=7)
    tiny = plan_of(config)
    skd = tiny.objective_options(1, "skd")
    assert option(skd, "--init") == "results/round1/students/top1-both" and option(skd, "--objective") == "skd"
    assert float(option(skd, "--lr")) == 0.001  # the entry's train.lr over the objective's 1e-5
    assert "--max-len-a 1.25 --max-len-b 7" in skd and option(skd, "--teacher") == "results/round1/models/teacher"
    assert float(option(tiny.objective_options(1, "scratch"), "--lr")) == 1e-5  # supervised KD's own lr
    scratch = tiny.objective_options(1, "scratch")
    assert "--init " not in scratch and "--init-from-teacher results/models/teacher --init-layers spaced" in scratch
    assert "--max-len-a" not in scratch  # supervised KD generates nothing
    topk = tiny.objective_inputs(1, "wordkd_topk")
    assert topk["topk"] == "results/round1/topk/top1-both.k8.pt"
    assert "--topk results/round1/topk/top1-both.k8.pt" in tiny.objective_options(1, "wordkd_topk")
    assert tiny.objective_inputs(1, "auto")["acceptance"] == "results/round1/skd/acceptance.top1-bitext.json"
    assert tiny.acceptance_files() == ["results/round1/skd/acceptance.top1-bitext.json"]
    assert tiny.topk_max_len() == 64
    assert tiny.system_strategy("skd") == "top1+skd" and tiny.system_strategy("rerank-mono") == "rerank"
    assert tiny.system_strategy("teacher") == "-"
    assert tiny.student_init_option() == "--init-from-teacher results/models/teacher --init-layers spaced"


def test_retrieval_students_get_a_sharded_kb_a_tuned_beta_and_an_hf_evaluation(config):
    tiny = plan_of(config)
    assert tiny.retrieval_systems == {"reaugkd.knn": "reaugkd"}
    shards = [f"results/round1/kb/top1-both/{s}" for s in ("bitext.0", "bitext.1", "mono.0")]
    assert tiny.kb_shards(1, "top1-both") == shards and tiny.kb_files() == shards
    assert tiny.objective_inputs(1, "reaugkd")["kb"] == shards
    assert f"--kb {' '.join(shards)}" in tiny.objective_options(1, "reaugkd")
    assert tiny.build_kb_inputs(1, "top1-both", "mono") == {
        "labels": "results/round1/labels/top1/mono.parquet", "teacher": "results/round1/models/teacher",
        "projection": "results/round1/kb/top1-both/projection.pt"}
    assert tiny.build_kb_options("bitext") == "--num-shards 2 --values-k 8 --max-len 64 --index flat"
    assert tiny.kb_projection_options() == ("--dim 32 --max-len 64 --sentences 100 --epochs 2 --batch-size 256"
                                            " --temperature 0.1 --lr 0.005 --max-per-token 50")
    assert tiny.retrieval_options("reaugkd") == "--betas 0 0.5 --max-len-a 1.2 --max-len-b 5"
    assert tiny.model_of(1, "reaugkd.knn") == "results/round1/students/reaugkd"
    assert tiny.system_strategy("reaugkd.knn") == "top1+reaugkd+knn"
    assert tiny.evaluate_retrieval_option(1, "reaugkd.knn") == (
        f"--retrieval results/round1/retrieval/reaugkd.json --kb {' '.join(shards)}")
    assert tiny.evaluate_retrieval_option(1, "reaugkd") == "" and ("reaugkd.knn", "reaugkd") in tiny.comparisons()
    assert tiny.report_inputs()["retrieval"] == ["results/round1/retrieval/reaugkd.json"]
    # CTranslate2 cannot mix a kNN distribution into its steps: the .knn row decodes on the hf path
    config["backend"]["evaluate"] = "ctranslate2"
    config["kb"].update(index="ivfpq", ivfpq={"nlist": 8})
    ct2 = plan_of(config)
    assert ct2.evaluate_backend_option(1, "reaugkd.knn") == "" and ct2.evaluate_translator(1, "reaugkd.knn") == []
    assert ct2.evaluate_backend_option(1, "reaugkd") == ""  # beta 0 on the same path
    assert "--backend ctranslate2" in ct2.evaluate_backend_option(1, "skd")
    assert ct2.build_kb_options("mono").endswith("--index ivfpq --nlist 8 --pq-m 32 --pq-bits 8 --nprobe 16")


def test_evaluation_report_and_figure_files(config):
    config["student"]["replicas"] = {"systems": ["top1-both"], "seeds": [7]}
    tiny = plan_of(config)
    systems = tiny.evaluated_systems()
    assert systems[:2] == [(0, "teacher"), (1, "teacher")] and (1, "top1-both.seed7") in systems
    assert (1, "pruned") in systems and not any(r == 0 and s != "teacher" for r, s in systems)
    assert tiny.kd_baseline() == "top1-both" and ("top1-both", "top1-both") not in tiny.comparisons()
    assert tiny.comparison_options().startswith("teacher:top1-both ref-bitext:top1-both")
    assert tiny.significance_files() == ["results/round1/eval/significance.json"]
    assert tiny.round_evaluations(0) == {"evaluations": ["results/round0/eval/teacher.json"],
                                        "test": "results/data/test.parquet"}
    assert tiny.figure_names() == ["bleu_ci", "teacher_gap", "reranker_weights", "reranker_gap", "training_curves",
                                   "label_diagnostics", "skd_acceptance"]
    assert "results/round1/labels/seqinter/bitext.json" in tiny.label_diagnostics_files()
    models = tiny.trained_models()
    assert models[:4] == [plan.TEACHER, "results/models/r2l", "results/models/backward", "results/models/lm"]
    assert "results/round1/models/r2l" in models and "results/round1/students/pruned" in models
    inputs = tiny.report_inputs()
    assert inputs["figures"] == tiny.figure_files() and len(inputs["models"]) == len(systems)
    config["student"]["objectives"] = [e for e in config["student"]["objectives"] if e["objective"] != "skd"]
    config["evaluation"].update(comparisons=[{"system": "pruned", "baseline": "ref-bitext", "finding": "x"}], note="n")
    other = plan_of(config)
    assert "skd_acceptance" not in other.figure_names() and other.comparison_options() == "pruned:ref-bitext"
    assert other.report_options() == ("--note n --findings"
                                      " '[{\"baseline\": \"ref-bitext\", \"finding\": \"x\", \"system\": \"pruned\"}]'")


def test_label_filter_and_comet_options(config):
    tiny = plan_of(config)
    assert tiny.label_filter_options() == ("--max-ngram 0 --max-repeats 0 --max-char-run 0 --min-length-ratio 0"
                                           " --max-length-ratio 0 --keep-source-copies"
                                           " --seqinter-candidates l2r --seqinter-references first")
    assert tiny.comet_options() == ""
    config["evaluation"]["comet"] = "/models/my comet"
    assert plan_of(config).comet_options() == "--comet '/models/my comet'"
    config["evaluation"]["comet_encoder"] = "/models/xlm-r"
    assert plan_of(config).comet_options() == "--comet '/models/my comet' --comet-encoder /models/xlm-r"


def test_with_evaluation_comet_significance_figures_and_report_read_the_comet_evaluations(config, tiny):
    assert tiny.evaluation_file(1, "top1-both") == "results/round1/eval/top1-both.json"
    config["evaluation"]["comet"] = "/models/comet"
    comet = plan_of(config)
    assert comet.evaluation_file(1, "top1-both") == "results/round1/eval/top1-both.comet.json"
    assert comet.round_evaluations(0)["evaluations"] == ["results/round0/eval/teacher.comet.json"]
    files = comet.evaluation_files()
    assert files == [f.replace(".json", ".comet.json") for f in tiny.evaluation_files()]
    assert comet.figure_inputs()["evaluations"] == comet.report_inputs()["evaluations"] == files


def executable(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def test_comet_runs_in_its_own_environment(config, tiny, tmp_path):
    """The comet scorers and evaluation.comet's step call the COMET interpreter: --sdm conda's env
    python, else $MTDISTILL_COMET_PYTHON, else <workflow>/.venv-comet; missing, the config is refused."""
    assert tiny.comet_key() is None
    assert tiny.comet_python(False, tmp_path, {}) == str(tmp_path / ".venv-comet" / "bin" / "python")  # unused: no check
    config["scorers"].append({"name": "kiwi", "kind": "comet", "model": "/models/kiwi"})
    kiwi = plan_of(config)
    key = rf"scorers\[{len(config['scorers']) - 1}\]\.kind \(kiwi\)"
    assert re.fullmatch(key, kiwi.comet_key())
    with pytest.raises(ValueError, match=rf"config key {key}: COMET runs in its own environment, but its interpreter"
                                         rf" {tmp_path}/.venv-comet/bin/python \(the default .venv-comet\) does not"
                                         r" exist: run `make install`"):
        kiwi.comet_python(False, tmp_path, {})
    elsewhere = tmp_path / "comet env" / "bin" / "python"
    with pytest.raises(ValueError, match=r"\(\$MTDISTILL_COMET_PYTHON\) does not exist"):
        kiwi.comet_python(False, tmp_path, {"MTDISTILL_COMET_PYTHON": str(elsewhere)})
    executable(elsewhere)
    assert kiwi.comet_python(False, tmp_path, {"MTDISTILL_COMET_PYTHON": str(elsewhere)}) == shlex.quote(str(elsewhere))
    default = executable(tmp_path / ".venv-comet" / "bin" / "python")
    assert kiwi.comet_python(False, tmp_path, {}) == str(default)
    assert kiwi.comet_python(True, tmp_path / "nowhere", {}) == "python"  # --sdm conda: envs/comet.yaml's
    # only the comet kind runs there
    assert (kiwi.scorer_python("kiwi", "COMET"), kiwi.scorer_python("teacher", "COMET")) == ("COMET", "python")
    rules = plan.SCHEMA.parents[1] / "rules"
    assert (rules / kiwi.scorer_env("kiwi")).resolve() == plan.SCHEMA.parents[2] / "envs" / "comet.yaml"
    assert (rules / kiwi.scorer_env("teacher")).resolve() == plan.SCHEMA.parents[2] / "envs" / "mtdistill.yaml"
    config["scorers"].pop()
    config["evaluation"]["comet"] = "/models/comet"
    assert plan_of(config).comet_key() == "evaluation.comet"
    with pytest.raises(ValueError, match="config key evaluation.comet: COMET runs in its own environment"):
        plan_of(config).comet_python(False, tmp_path / "nowhere", {})


def edit(config: dict, path: str, value) -> dict:
    *keys, last = path.split(".")
    target = config
    for key in keys:
        target = target[int(key)] if isinstance(target, list) else target[key]
    target[last] = value
    return config


@pytest.mark.parametrize("path, value, message", [
    ("lm", {"train": {}}, r"config key lm\.arch: scorer lm uses the workflow's LM"),
    ("scorers.1.name", "teacher", r"config key scorers: scorer names must be unique"),
    ("scorers.0.sets", ["tune"], None),  # still others on every set
    ("student.systems", ["top1-both", "seqinter-mono"],
     r"student\.systems\[1\] \(seqinter-mono\): strategy seqinter needs references, so bitext only"),
    ("student.objectives", [{"name": "skd", "recipe": "skd", "init": "top1-both", "labels": "mbr-mono"}],
     r"student\.objectives\[0\]\.labels \(skd\): mbr-mono is not in student\.systems"),
    ("student.objectives", [{"name": "skd", "objective": "skd", "labels": "top1-both", "init": "rerank-bitext"}],
     r"student\.objectives\[0\]\.init \(skd\): rerank-bitext is not in student\.systems"),
    ("student.objectives", [{"name": "skd", "objective": "skd", "labels": "top1-both", "k": "auto"}],
     r"student\.objectives\[0\]\.k \(skd\): auto measures acceptance on the `init` student; set init"),
    ("student.objectives", [{"name": "v", "objective": "skd", "labels": "top1-both", "alpha": 0.5}],
     r"student\.objectives\[0\]\.alpha: objective skd does not use it"),
    ("student.replicas", {"systems": ["top1-mono"], "seeds": [2]},
     r"student\.replicas\.systems\[0\]: top1-mono is not in student\.systems"),
    ("kb.ivfpq", {"nlist": 4}, r"config key kb\.ivfpq: kb\.index is flat, which does not use it"),
    ("kb.index", "ivfpq", r"config key kb\.ivfpq: kb\.index ivfpq needs it"),
    ("student.objectives", [{"name": "r", "objective": "reaugkd", "labels": "top1-both", "topk": 8}],
     r"student\.objectives\[0\]\.topk: objective reaugkd does not use it"),
    ("evaluation.comparisons", [{"system": "top1-both", "baseline": "tpo1-both"}],
     r"evaluation\.comparisons\[0\]\.baseline: tpo1-both is not a system of this run"),
    ("evaluation.comet_encoder", "/models/xlm-roberta-large",
     r"config key evaluation\.comet_encoder: set, but evaluation\.comet names no checkpoint"),
])
def test_every_config_check_names_its_key(config, path, value, message):
    edit(config, path, value)
    if message is None:
        plan_of(config)
        return
    with pytest.raises(ValueError, match=message):
        plan_of(config)


def test_config_checks_across_sets_and_strategies(config):
    config["transfer_sets"] = ["bitext"]
    with pytest.raises(ValueError, match=r"student\.systems\[1\] \(top1-both\): transfer set mono not in transfer_sets"):
        plan_of(config)
    config = tiny_config()
    for scorer in config["scorers"]:
        scorer["sets"] = ["tune", "dev"]
    with pytest.raises(ValueError, match="config key scorers: no scorer runs on every set, so nothing can rerank"):
        plan_of(config)
    config = tiny_config()
    config["scorers"] = [s for s in config["scorers"] if s["kind"] != "mbr"]
    with pytest.raises(ValueError, match="config key student.systems: strategy mbr needs a scorer of kind mbr"):
        plan_of(config)
    config["student"]["systems"].remove("mbr-both")
    config["self_training"]["labels"] = "mbr"
    with pytest.raises(ValueError, match="strategy mbr needs a scorer of kind mbr"):
        plan_of(config)


@pytest.mark.parametrize("section, old, new", sorted((*key, new) for key, new in plan.RENAMED.items()))
def test_renamed_keys_are_refused_naming_the_new_one(config, section, old, new):
    config.setdefault(section, {})[old] = {}
    with pytest.raises(ValueError, match=rf"config key {section}\.{old}: renamed {new}"):
        plan.refuse_renamed(config)


def test_the_schema_requires_a_model_of_the_kinds_that_load_one(config):
    config["scorers"].append({"name": "kiwi", "kind": "comet"})
    with pytest.raises(Exception, match=r"(?s)'model' is a required property.*need `model`"):
        validated(config)
    for kind in KINDS:
        scorer = {"name": "x", "kind": kind}
        errors = list(jsonschema.Draft202012Validator(plan.schema()["definitions"]["scorer"]).iter_errors(scorer))
        assert bool(errors) == KINDS[kind].needs_model, kind


def builtin(registry, module_of) -> list[str]:
    """The names the package itself registers (an extension a test installed may have added more)."""
    return [name for name, component in registry.items() if module_of(component).startswith("mtdistill.")]


def test_the_schema_file_lists_the_registries_names():
    """The committed schema's enums are the built-in registry keys (a new built-in updates both)."""
    definitions = yaml.safe_load(plan.SCHEMA.read_text())["definitions"]
    kinds = builtin(KINDS, lambda kind: kind.function)
    strategies = builtin(STRATEGIES, lambda strategy: strategy.choose.__module__)
    scorer = definitions["scorer"]
    assert scorer["properties"]["kind"]["enum"] == kinds
    assert scorer["if"]["properties"]["kind"]["enum"] == [k for k in kinds if KINDS[k].needs_model]
    assert definitions["system"]["pattern"] == f"^({'|'.join(strategies)})-(bitext|mono|both)$"
    assert definitions["finetuning_labels"]["enum"] == [s for s in strategies if not STRATEGIES[s].needs_reference]
    entry = definitions["objective_student"]["properties"]
    assert entry["objective"]["enum"] == builtin(objectives.OBJECTIVES, lambda objective: objective.__module__)
    assert entry["recipe"]["enum"] == list(objectives.RECIPES)


def test_the_workflow_schema_takes_an_extensions_names(monkeypatch, config):
    monkeypatch.setitem(KINDS._entries, "bleurt", KINDS["comet"])
    monkeypatch.setitem(STRATEGIES._entries, "oracle", STRATEGIES["seqinter"])
    definitions = plan.schema()["definitions"]
    assert "bleurt" in definitions["scorer"]["properties"]["kind"]["enum"]
    assert "bleurt" in definitions["scorer"]["if"]["properties"]["kind"]["enum"]
    assert "oracle" in definitions["system"]["pattern"] and "oracle" not in definitions["finetuning_labels"]["enum"]
    config["scorers"].append({"name": "b", "kind": "bleurt", "model": "/models/bleurt"})
    config["student"]["systems"].append("oracle-bitext")
    assert plan_of(config).round_strategies(1) >= {"oracle"}
