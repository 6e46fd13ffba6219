"""Distillation objectives: the SKD acceptance rule and its limits, word-level KD, supervised KD, pruning."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from helpers import train_args
from mtdistill import models, teacher_topk, train
from mtdistill.core.io import InputError
from mtdistill.objectives import OBJECTIVES, speculator as spec
from mtdistill.objectives.prune import prunable
from mtdistill.objectives.speculative import SpeculativeKD, SupervisedKD
from mtdistill.objectives.teacher import check_shared_vocabulary
from mtdistill.objectives.word_kd import WordKD
from mtdistill.training.batches import collate, encode


def test_acceptance_rule_on_hand_made_logits():
    logits = torch.tensor([[5.0, 4, 3, 2, 1, 0],   # draft 1 ranks second
                           [0.0, 0, 9, 0, 0, 0],   # draft 2 ranks first
                           [9.0, 8, 7, 6, 5, 4]])  # draft 5 ranks last
    drafts = torch.tensor([1, 2, 5])
    assert [spec.accepted_length(drafts, logits, k) for k in (0, 1, 2, 5, 6, 100)] == [0, 0, 2, 2, 3, 3]
    # the count is of leading accepted drafts: a later accepted one does not help after a rejection
    assert spec.accepted_length(torch.tensor([0, 3, 2]), logits, 1) == 1
    # ties with the drafted token's logit count as inside the top k
    assert spec.accepted_length(torch.tensor([3]), torch.zeros(1, 6), 1) == 1
    assert spec.accepted_length(torch.tensor([], dtype=torch.long), torch.zeros(0, 6), 5) == 0


def test_nucleus_sampling_keeps_the_top_tokens():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    generator = torch.Generator().manual_seed(0)
    drawn = {int(spec.sample(logits, 1.0, 0.6, generator)) for _ in range(200)}
    assert drawn == {0, 1}  # 0.5 < 0.6 needs the second token; the third starts beyond top-p
    assert int(spec.sample(logits, 0.0, 0.5, generator)) == 0


@pytest.fixture(scope="module")
def pair(teacher_dir):
    """A frozen teacher and an untrained student sharing its vocabulary."""
    teacher, tokenizer = models.load(teacher_dir)
    torch.manual_seed(3)
    student = models.build_model({"d_model": 32, "encoder_layers": 1, "decoder_layers": 1, "heads": 2, "ffn_dim": 64}, tokenizer)
    return teacher.eval(), student.eval(), tokenizer


def sources(data_dir, tokenizer, n):
    texts = list(pd.read_parquet(data_dir / "tune.parquet").source[:n])
    batch = tokenizer(texts, return_tensors="pt", padding=True)
    return batch["input_ids"], batch["attention_mask"]


@torch.no_grad()
def sample_alone(model, input_ids, attention_mask, tokenizer, sampling, max_len, generator):
    """Reference: one model sampling token by token, nothing else drawing from the generator."""
    sequence = [model.config.decoder_start_token_id]
    while len(sequence) <= max_len:
        logits = model(input_ids=input_ids, attention_mask=attention_mask,
                       decoder_input_ids=torch.tensor([sequence])).logits[0, -1].float()
        logits[tokenizer.pad_token_id] = -float("inf")
        sequence.append(int(spec.sample(logits[None], *sampling, generator)))
        if sequence[-1] == tokenizer.eos_token_id:
            break
    return sequence[1:]


@pytest.mark.parametrize("limit", ["on_policy", "teacher_only"])
def test_k_limits_are_exactly_student_or_teacher_sampling(pair, data_dir, limit):
    teacher, student, tokenizer = pair
    input_ids, attention_mask = sources(data_dir, tokenizer, 1)
    k, model, sampling = (len(tokenizer), student, (0.9, 0.9)) if limit == "on_policy" else (0, teacher, (0.7, 0.9))
    speculator = spec.Speculator(student, teacher, tokenizer, k, gamma=3, student_sampling=(0.9, 0.9),
                               teacher_sampling=(0.7, 0.9), max_len=12, generator=torch.Generator().manual_seed(5))
    sequences, kept, generated = speculator.generate(input_ids, attention_mask)
    expected = sample_alone(model, input_ids, attention_mask, tokenizer, sampling, 12, torch.Generator().manual_seed(5))
    assert sequences == [expected]
    assert kept == (generated if limit == "on_policy" else 0) and generated == len(expected)


def test_batches_keep_each_sentence_own_acceptance(pair, data_dir):
    """Greedy drafting and resampling: a batch gives every sentence what it gets alone."""
    teacher, student, tokenizer = pair
    input_ids, attention_mask = sources(data_dir, tokenizer, 4)

    def run(k, rows):
        speculator = spec.Speculator(student, teacher, tokenizer, k, gamma=3, student_sampling=(0.0, 1.0),
                                   teacher_sampling=(0.0, 1.0), max_len=10)
        return speculator.generate(input_ids[rows], attention_mask[rows])

    k = len(tokenizer) // 4  # an untrained student: about a quarter of its drafts in the teacher's top k
    batch, kept, generated = run(k, slice(0, 4))
    alone = [run(k, slice(i, i + 1))[0][0] for i in range(4)]
    assert batch == alone and 0 < kept < generated
    student_greedy = [sample_alone(student, input_ids[i:i + 1, :int(attention_mask[i].sum())], attention_mask[i:i + 1, :int(attention_mask[i].sum())],
                                   tokenizer, (0.0, 1.0), 10, None) for i in range(4)]
    assert run(len(tokenizer), slice(0, 4))[0] == student_greedy


def test_supervised_kd_is_word_kd_without_cross_entropy(pair, teacher_dir, data_dir):
    teacher, student, tokenizer = pair
    table = pd.read_parquet(data_dir / "tune.parquet")[:6]
    pairs = encode(tokenizer, list(table.source), list(table.target), 64)
    batch, labels = collate(pairs, list(range(6)), tokenizer.pad_token_id, torch.device("cpu"))
    supervised = SupervisedKD(str(teacher_dir))
    word = WordKD(str(teacher_dir), alpha=1.0, tau=1.0)
    for objective in (supervised, word):
        objective.prepare(student, tokenizer, table, pairs, torch.device("cpu"))
    (a, tokens_a), (b, tokens_b) = supervised(student, batch, labels, range(6)), word(student, batch, labels, range(6))
    assert tokens_a == tokens_b and a.item() == pytest.approx(b.item(), rel=1e-6) and a.item() > 0


def test_precomputed_top_k_gives_the_online_kl(pair, teacher_dir, data_dir, work):
    teacher, student, tokenizer = pair
    labels_file = work / "kd_labels.parquet"
    pd.read_parquet(data_dir / "tune.parquet")[:6].assign(label=lambda d: d.target).to_parquet(labels_file)
    cache = work / "topk.pt"
    assert teacher_topk.main(["--teacher", str(teacher_dir), "--train", str(labels_file), "--k", str(len(tokenizer)),
                              "--out", str(cache)]) == 0
    table = pd.read_parquet(labels_file)
    pairs = encode(tokenizer, list(table.source), list(table.label), 128)
    batch, labels = collate(pairs, [3, 0, 5], tokenizer.pad_token_id, torch.device("cpu"))
    losses = []
    for topk in (None, str(cache)):
        objective = WordKD(str(teacher_dir), alpha=1.0, tau=1.0, topk_path=topk)
        objective.prepare(student, tokenizer, table, pairs, torch.device("cpu"))
        losses.append(objective(student, batch, labels, [3, 0, 5])[0].item())
    assert losses[1] == pytest.approx(losses[0], rel=1e-2)  # k = |V|: truncation drops nothing (float16 storage)
    with pytest.raises(InputError, match="not the training table"):
        WordKD(str(teacher_dir), 1.0, 1.0, topk_path=str(cache)).prepare(student, tokenizer, table[::-1], pairs, "cpu")


def test_teacher_with_another_vocabulary_is_refused(tmp_path, teacher_dir):
    _, tokenizer = models.load(teacher_dir)
    other = models.train_tokenizer(["ein ganz anderes Vokabular", "a different vocabulary"] * 50, 60, tmp_path / "other")
    with pytest.raises(InputError, match="do not share the target vocabulary"):
        check_shared_vocabulary(other, tokenizer, "other-teacher")


def student_run(work, labels, data_dir, teacher_dir, config, name, *options):
    out = work / name
    train_options = dict(zip(train_args(config, "student")[::2], train_args(config, "student")[1::2]))
    train_options.update({"--max-steps": "4", "--eval-every": "2", "--select-by": "loss"})
    argv = ["--train", str(labels), "--label-column", "label", "--dev", str(data_dir / "dev.parquet"),
            "--init", str(teacher_dir), *[x for kv in train_options.items() for x in kv], "--out", str(out), *options]
    assert train.main(argv) == 0
    return out, json.loads((out / "training.json").read_text())


def test_skd_training_logs_acceptance_per_step(work, kd_labels, data_dir, teacher_dir, config):
    out, summary = student_run(work, kd_labels, data_dir, teacher_dir, config, "skd", "--objective", "skd", "--teacher", str(teacher_dir),
                               "--k", "5", "--gamma", "3")
    assert (out / "acceptance.png").stat().st_size > 0  # drawn by figures.training.skd_acceptance
    assert len(summary["acceptance_per_step"]) == 4 and all(0 <= a <= 1 for a in summary["acceptance_per_step"])
    assert all("acceptance_rate" in h and "seconds_per_step" in h for h in summary["history"])


def test_pruning_zeroes_weights_and_retrains(work, kd_labels, data_dir, teacher_dir, config):
    out, summary = student_run(work, kd_labels, data_dir, teacher_dir, config, "pruned", "--objective", "prune", "--prune", "0.4")
    model, _ = models.load(out)
    linear = [m.weight for m in prunable(model)]
    zeros = sum(int((w == 0).sum()) for w in linear) / sum(w.numel() for w in linear)
    assert zeros == pytest.approx(0.4, abs=0.01)  # still pruned after retraining, masks folded in
    assert models.nonzero_parameters(model) < summary["nonzero_before"]


# --- issue 15: decode.max_len_a/b in SKD generation and evaluation, top-k cache coverage, the objectives' options


def generated_tokens(sequence: list[int], eos: int) -> int:
    """Tokens a decoder produced after its start token, up to and including EOS (decode's convention)."""
    return sequence.index(eos) + 1 if eos in sequence else len(sequence)


@pytest.mark.parametrize("k", [0, 2, -1])
def test_speculative_generation_stops_at_max_len_a_b(pair, teacher_dir, data_dir, k):
    """max_len_a 0, max_len_b 3: at most 3 generated tokens, EOS included, as decoding's max_new_tokens."""
    teacher, student, tokenizer = pair
    input_ids, attention_mask = sources(data_dir, tokenizer, 6)
    speculator = spec.speculator(student, teacher, tokenizer, k, 2, (1.0, 1.0), (1.0, 1.0), 128,
                               torch.Generator().manual_seed(0), max_len_a=0.0, max_len_b=3)
    sequences, kept, generated = speculator.generate(input_ids, attention_mask)
    assert all(len(s) <= 3 for s in sequences) and max(map(len, sequences)) == 3  # the limit binds
    assert generated == sum(map(len, sequences)) and all(generated_tokens(s, tokenizer.eos_token_id) == len(s) for s in sequences)
    # the default is today's: 1.5 x the source tokens (EOS included) + 10, at most max_len
    lengths = attention_mask.sum(1).tolist()
    assert spec.Speculator(student, teacher, tokenizer, 2, 2, max_len=20).limits(attention_mask) == [min(20, int(1.5 * n + 10)) for n in lengths]
    # SpeculativeKD passes the limit through to the sequences it trains on
    objective = SpeculativeKD(str(teacher_dir), k, 2, (1.0, 1.0), (1.0, 1.0), max_len_a=0.0, max_len_b=3)
    objective.prepare(student, tokenizer, None, [], torch.device("cpu"))
    batch, labels = objective.sequence_batch(student, {"input_ids": input_ids, "attention_mask": attention_mask}, input_ids)
    assert labels.shape[1] <= 3 and batch["decoder_input_ids"].shape == labels.shape


class GenerationSpy:
    """A CTranslate2 translator that records the token count of each hypothesis it returns."""

    def __init__(self, translator):
        self.translator, self.lengths = translator, []

    def translate_batch(self, *args, **options):
        results = self.translator.translate_batch(*args, **{**options, "return_end_token": True})
        self.lengths += [len(h) for r in results for h in r.hypotheses]  # EOS included when produced
        for r in results:  # as CT2Translator.translate expects them: without `</s>`
            r.hypotheses[:] = [h[:-1] if h and h[-1] == "</s>" else h for h in r.hypotheses]
        return results


def test_evaluation_decoding_stops_at_max_len_a_b(teacher_dir, data_dir, tmp_path):
    """evaluate's decoding (timed_decoding) caps outputs at max_len_a * source + max_len_b tokens on both backends."""
    from mtdistill import evaluate
    from mtdistill.backends import ctranslate2
    from mtdistill.backends.hf import HFTranslator

    model, tokenizer = models.load(teacher_dir)
    texts = list(pd.read_parquet(data_dir / "test.parquet").source[:8])
    produced = []
    generate = model.generate

    def spy(*args, **options):
        out = generate(*args, **options)
        produced.extend(generated_tokens(seq[1:], tokenizer.eos_token_id) for seq in out.sequences.tolist())
        return out

    model.generate = spy
    for beam in (1, 2):
        produced.clear()
        short, speed = evaluate.timed_decoding(HFTranslator(model, tokenizer), texts, beam, 4, max_len_a=0.0, max_len_b=3)
        assert max(produced) == 3 and speed["sentences"] == len(texts)
    unlimited, _ = evaluate.timed_decoding(HFTranslator(model, tokenizer), texts, 1, 4)
    assert max(produced) > 3 and sum(map(len, short)) < sum(map(len, unlimited))  # the default 1.5, 10 is longer

    translator = ctranslate2.load(ctranslate2.convert(teacher_dir, tmp_path / "ct2"))
    recorded = GenerationSpy(translator.translator)
    evaluate.timed_decoding(ctranslate2.CT2Translator(recorded, translator.tokenizer), texts, 1, 4, max_len_a=0.0,
                            max_len_b=3)
    assert max(recorded.lengths) == 3  # CTranslate2's max_decoding_length counts `</s>` too


def topk_cache(teacher_dir, labels_file, max_len: int, out) -> dict:
    assert teacher_topk.main(["--teacher", str(teacher_dir), "--train", str(labels_file), "--k", "4",
                              "--max-len", str(max_len), "--out", str(out)]) == 0
    return torch.load(out, weights_only=False)


def test_topk_cache_must_cover_every_trained_label_position(pair, teacher_dir, data_dir, work):
    import re

    _, student, tokenizer = pair
    labels_file = work / "kd_labels_short.parquet"
    table = pd.read_parquet(data_dir / "tune.parquet")[:6].assign(label=lambda d: d.target)
    table.to_parquet(labels_file)
    pairs = encode(tokenizer, list(table.source), list(table.label), 16)
    assert max(len(label) for _, label in pairs) > 4  # labels the short cache truncated
    short = topk_cache(teacher_dir, labels_file, 4, work / "topk4.pt")
    assert short["max_len"] == 4
    objective = WordKD(str(teacher_dir), 0.5, 1.0, topk_path=str(work / "topk4.pt"), max_len=16)
    with pytest.raises(InputError, match=re.escape(str(work / "topk4.pt")) + r": built with max_len 4, but training uses max_len 16"):
        objective.prepare(student, tokenizer, table, pairs, torch.device("cpu"))
    # the same max_len on both sides: every position is covered and trains
    assert topk_cache(teacher_dir, labels_file, 16, work / "topk16.pt")["max_len"] == 16
    objective = WordKD(str(teacher_dir), 0.5, 1.0, topk_path=str(work / "topk16.pt"), max_len=16)
    objective.prepare(student, tokenizer, table, pairs, torch.device("cpu"))
    batch, labels = collate(pairs, list(range(6)), tokenizer.pad_token_id, torch.device("cpu"))
    loss, tokens = objective(student, batch, labels, list(range(6)))
    assert tokens == sum(len(label) for _, label in pairs) and torch.isfinite(loss)


OBJECTIVE_BASE = ["--train", "t.parquet", "--dev", "d.parquet", "--init", "m", "--teacher", "t", "--out", "o"]


@pytest.mark.parametrize("objective,given", [
    ("skd", ["--alpha", "0.3"]), ("skd", ["--alpha=0.3"]), ("skd", ["--prune", "0.3"]), ("skd", ["--topk", "c.pt"]),
    ("word_kd", ["--k", "5"]), ("word_kd", ["--gamma", "2"]), ("supervised_kd", ["--k", "5"]),
    ("supervised_kd", ["--student-top-p", "0.9"]), ("prune", ["--tau", "2"]), ("prune", ["--topk", "c.pt"]),
])
def test_train_refuses_options_its_objective_does_not_use(objective, given, capsys):
    with pytest.raises(SystemExit) as exit:
        train.parse_args([*OBJECTIVE_BASE, "--objective", objective, *given])
    assert exit.value.code == 2
    option = given[0].split("=")[0]
    assert f"{option}: objective {objective} does not use it" in capsys.readouterr().err


def test_cross_entropy_is_the_default_and_refuses_the_others_options(capsys):
    args = train.parse_args(OBJECTIVE_BASE)
    assert args.objective == "cross_entropy" and args.lr == 7e-4
    assert not hasattr(args, "alpha") and not hasattr(args, "max_len_a")  # not recorded in training.json either
    for given in (["--alpha", "0.3"], ["--max-len-a", "2"], ["--acceptance", "a.json"]):
        with pytest.raises(SystemExit):
            train.parse_args([*OBJECTIVE_BASE, *given])
        assert f"{given[0]}: objective cross_entropy does not use it" in capsys.readouterr().err


def test_importing_the_objectives_loads_no_torch():
    import subprocess
    import sys

    code = "import sys, mtdistill.objectives as o; list(o.OBJECTIVES); print('torch' in sys.modules, 'pandas' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split() == ["False", "False"]


def test_objective_defaults_come_from_the_objective_registry():
    skd = train.parse_args([*OBJECTIVE_BASE, "--objective", "skd"])
    assert skd.lr == OBJECTIVES["skd"].train["lr"] == 1e-5
    assert {key: getattr(skd, key) for key in OBJECTIVES["skd"].keys} == OBJECTIVES["skd"].keys
    assert (skd.max_len_a, skd.max_len_b) == (1.5, 10)
    assert train.parse_args([*OBJECTIVE_BASE, "--objective", "skd", "--lr", "1e-4"]).lr == 1e-4
    assert train.parse_args([*OBJECTIVE_BASE, "--objective", "supervised_kd"]).lr == 1e-5
    word = train.parse_args([*OBJECTIVE_BASE, "--objective", "word_kd", "--alpha", "0.3", "--topk", "c.pt"])
    assert (word.alpha, word.tau, word.topk, word.lr) == (0.3, 1.0, "c.pt", 7e-4)  # train's default lr
    assert train.parse_args([*OBJECTIVE_BASE, "--objective", "prune"]).prune == 0.5


def test_skd_k_auto_reads_the_chosen_k(tmp_path, capsys):
    chosen, none = tmp_path / "acceptance.json", tmp_path / "none.json"
    chosen.write_text(json.dumps({"chosen_k": 3, "choice": "rule"}))
    none.write_text(json.dumps({"chosen_k": None, "choice": "rule"}))
    skd = [*OBJECTIVE_BASE, "--objective", "skd"]
    args = train.parse_args([*skd, "--k", "auto", "--acceptance", str(chosen)])
    assert args.k == 3 and args.acceptance == str(chosen)
    assert train.parse_args([*skd, "--k", "-1"]).k == -1 and train.parse_args([*skd, "--k", "0"]).k == 0
    for argv, message in [([*skd, "--k", "auto", "--acceptance", str(none)], f"{none}: chosen_k is null"),
                          ([*skd, "--k", "auto", "--acceptance", str(tmp_path / "missing.json")], "missing.json: file not found"),
                          ([*skd, "--k", "auto"], "--k auto needs --acceptance"),
                          ([*skd, "--k", "3", "--acceptance", str(chosen)], "--acceptance goes with --k auto"),
                          ([*skd, "--k", "many"], "neither an integer nor auto")]:
        with pytest.raises(SystemExit):
            train.parse_args(argv)
        assert message in capsys.readouterr().err


def test_skd_with_k_auto_records_the_k_it_trained_with(work, kd_labels, data_dir, teacher_dir, config):
    acceptance = work / "acceptance_k4.json"
    acceptance.write_text(json.dumps({"chosen_k": 4, "choice": "rule"}))
    _, summary = student_run(work, kd_labels, data_dir, teacher_dir, config, "skd_auto", "--objective", "skd",
                             "--teacher", str(teacher_dir), "--k", "auto", "--acceptance", str(acceptance), "--gamma", "3")
    assert summary["k"] == 4 and summary["gamma"] == 3 and summary["arguments"]["k"] == 4
    assert summary["arguments"]["acceptance"] == str(acceptance)
