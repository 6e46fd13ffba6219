"""Teacher families: how a pretrained model is told the languages, and which tokens are its own.

A teacher's `Profile` (saved as `mtdistill_teacher.json` beside its weights) names its family and the
config keys it was given; `codec(tokenizer, profile)` returns the family's `Codec`, which every step that
feeds the teacher text or reads its output goes through, so that no step knows a family:

- marian: the source as it is (optionally after `source_prefix`, e.g. `>>fra<< `), decoding from `<pad>`;
- nllb, m2m100, mbart50: a source language token before the source, the target language token forced
  after the decoder start (`</s>`), never counted in a score;
- t5 (MADLAD): `source_prefix` (`<2en> `) before the source;
- causal: a decoder-only LM prompted with `prompt` (optionally as a user turn of its chat template), its
  continuation read up to EOS or a stop token, the prompt never counted in a score.

Families are a registry (`FAMILIES`): an extension registers a `Family` with its own `Codec`.
"""

from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from ..core.io import InputError, write_json
from ..core.registry import Registry
from ..core.tokens import target_ids as marian_target_ids

PROFILE = "mtdistill_teacher.json"
KEYS = ("src_lang", "tgt_lang", "source_prefix", "prompt", "chat_template", "stop")


@dataclass(frozen=True)
class Profile:
    """A teacher's family and the config keys that tell it the languages (empty: not given)."""

    family: str = "marian"
    src_lang: str = ""
    tgt_lang: str = ""
    source_prefix: str = ""
    prompt: str = ""
    chat_template: bool = False
    stop: tuple[str, ...] = field(default_factory=tuple)

    @classmethod
    def from_keys(cls, family: str, keys: dict) -> "Profile":
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in keys.items() if k in known and k != "family"}
        values["stop"] = tuple(values.get("stop") or ())
        return cls(family=family, **values)

    @classmethod
    def load(cls, model_dir) -> "Profile":
        """The profile saved in a model directory; Marian's when there is none (models trained here)."""
        path = Path(model_dir) / PROFILE
        if not path.is_file():
            return cls()
        return cls.from_keys(*(lambda d: (d.pop("family"), d))(json.loads(path.read_text())))

    def save(self, model_dir) -> None:
        write_json({**asdict(self), "stop": list(self.stop)}, Path(model_dir) / PROFILE)

    def given(self) -> dict:
        """The keys set (not at their empty default)."""
        return {key: getattr(self, key) for key in KEYS if getattr(self, key)}

    def swapped(self) -> "Profile":
        """The same model read the other way (a target->source model scoring the source)."""
        return Profile(self.family, self.tgt_lang, self.src_lang, self.source_prefix, self.prompt,
                       self.chat_template, self.stop)


class Codec:
    """Marian's conventions; the other families override what differs.

    `source_ids`: the model's input ids; `target_prefix`: tokens forced after the decoder start token;
    `target_ids`: a text's tokens and the end token, as scored; `stop_ids`: tokens that end an output.
    """

    causal = False
    # Marian's <pad> is no output: CTranslate2 drops it from the vocabulary and the models trained here
    # keep it near zero probability, so its forced scores leave it out of the softmax. Other families
    # keep it there, as their beam search scores every token.
    @property
    def masks_pad(self) -> bool:
        return self.profile.family == "marian"

    def __init__(self, tokenizer, profile: Profile):
        self.tokenizer, self.profile = tokenizer, profile

    def source_ids(self, texts: list[str], max_len: int) -> list[list[int]]:
        prefix = self.profile.source_prefix
        return self.tokenizer([prefix + t for t in texts], truncation=True, max_length=max_len)["input_ids"]

    @property
    def target_prefix(self) -> list[int]:
        return []

    def target_ids(self, texts: list[str], max_len: int, reverse: bool = False) -> list[list[int]]:
        return marian_target_ids(self.tokenizer, texts, max_len, reverse)

    @property
    def stop_ids(self) -> list[int]:
        return [self.tokenizer.eos_token_id]

    @property
    def pad_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        return self.tokenizer.eos_token_id if pad is None else pad

    def text(self, ids) -> str:
        """An output's text: up to its first stop token, special tokens dropped."""
        ids = list(ids)
        stops = set(self.stop_ids)
        end = next((i for i, t in enumerate(ids) if t in stops), len(ids))
        return self.tokenizer.decode(ids[:end], skip_special_tokens=True).strip()


class LanguageCodec(Codec):
    """NLLB, M2M100, mBART-50: `[src_lang] source </s>` in, `</s> [tgt_lang]` forced as the decoder's start."""

    def __init__(self, tokenizer, profile: Profile):
        super().__init__(tokenizer, profile)
        self.source_token = self.language_id("src_lang")
        self.target_token = self.language_id("tgt_lang")

    def language_id(self, key: str) -> int:
        code = getattr(self.profile, key)
        token = FAMILIES[self.profile.family].token_format.format(code)
        token_id = self.tokenizer.convert_tokens_to_ids(token)
        if token_id is None or token_id == self.tokenizer.unk_token_id:
            standard = {self.tokenizer.bos_token, self.tokenizer.eos_token, self.tokenizer.pad_token,
                        self.tokenizer.unk_token, "<mask>"}
            codes = [t for t in self.tokenizer.all_special_tokens if t not in standard][:6]
            raise InputError(f"config key teacher.{key}: {code!r} is not a language code of this {self.profile.family}"
                             f" tokenizer (its codes look like {', '.join(codes) or 'none listed'})")
        return token_id

    def plain_ids(self, texts: list[str], room: int) -> list[list[int]]:
        return [ids[:room] for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"]]

    def source_ids(self, texts, max_len):
        eos = self.tokenizer.eos_token_id
        return [[self.source_token, *ids, eos] for ids in self.plain_ids(texts, max_len - 2)]

    @property
    def target_prefix(self):
        return [self.target_token]

    def target_ids(self, texts, max_len, reverse=False):
        if reverse:
            raise InputError(f"a {self.profile.family} teacher has no right-to-left form")
        return [[*ids, self.tokenizer.eos_token_id] for ids in self.plain_ids(texts, max_len - 1)]


class CausalCodec(Codec):
    """A decoder-only LM: the prompt (or the chat template's user turn) in, its continuation out."""

    causal = True
    PROBE = "MTDISTILL_REPLY"

    def __init__(self, tokenizer, profile: Profile):
        super().__init__(tokenizer, profile)
        if profile.chat_template and not getattr(tokenizer, "chat_template", None):
            raise InputError("config key teacher.chat_template: the tokenizer has no chat template")
        stops = [self.token_id("stop", token) for token in profile.stop]
        if profile.chat_template:
            stops.append(self.turn_end())
        self._stops = list(dict.fromkeys([*stops, tokenizer.eos_token_id]))

    def token_id(self, key: str, token: str) -> int:
        ids = self.tokenizer.convert_tokens_to_ids([token])
        if not ids or ids[0] is None or ids[0] == self.tokenizer.unk_token_id:
            raise InputError(f"config key teacher.{key}: {token!r} is not a token of the tokenizer")
        return ids[0]

    def turn_end(self) -> int:
        """The token that ends an assistant turn in the chat template (<|im_end|>, <end_of_turn>, ...)."""
        chat = [{"role": "user", "content": "x"}, {"role": "assistant", "content": self.PROBE}]
        rendered = self.tokenizer.apply_chat_template(chat, tokenize=False)
        after = self.tokenizer(rendered.split(self.PROBE)[-1], add_special_tokens=False)["input_ids"]
        special = set(self.tokenizer.all_special_ids)
        return next((t for t in after if t in special), self.tokenizer.eos_token_id)

    def prompt_text(self, source: str) -> str:
        p = self.profile
        try:
            return p.prompt.format(source=source, src_lang=p.src_lang, tgt_lang=p.tgt_lang)
        except (KeyError, IndexError, ValueError) as err:
            raise InputError(f"config key teacher.prompt: {err!r}: placeholders are {{source}}, {{src_lang}},"
                             " {tgt_lang} (write {{ and }} for braces)") from None

    def rendered(self, texts: list[str]) -> list[str]:
        """The prompt of each source as the model reads it: formatted, and inside the chat template's user turn."""
        prompts = [self.prompt_text(t) for t in texts]
        if not self.profile.chat_template:
            return prompts
        return [self.tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                                   add_generation_prompt=True) for p in prompts]

    def source_ids(self, texts, max_len):
        """Prompt ids; the source inside is cut to `max_len` tokens, the prompt around it never."""
        cut = [self.tokenizer.decode(ids[:max_len]) if len(ids) > max_len else t
               for t, ids in zip(texts, self.tokenizer(texts, add_special_tokens=False)["input_ids"])]
        # a chat template writes its own BOS; a plain prompt gets the tokenizer's
        return self.tokenizer(self.rendered(cut), add_special_tokens=not self.profile.chat_template)["input_ids"]

    @functools.cached_property
    def prompt_tail(self) -> str:
        """What every prompt ends with after its source: the text an output continues."""
        return self.rendered([self.PROBE])[0].split(self.PROBE)[-1]

    def target_ids(self, texts, max_len, reverse=False):
        """An output's tokens as the model wrote them after its prompt: tokenized after the prompt's tail
        (BPE merges a word with the space before it, which `text` strips), then the first stop token."""
        if reverse:
            raise InputError("a causal teacher has no right-to-left form")
        tail = self.prompt_tail
        joiner = " " if tail and not tail[-1].isspace() else ""
        tail_ids = self.tokenizer(tail, add_special_tokens=False)["input_ids"]
        joined = self.tokenizer([tail + joiner + t for t in texts], add_special_tokens=False)["input_ids"]
        alone = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        ids = [j[len(tail_ids):] if j[: len(tail_ids)] == tail_ids else a for j, a in zip(joined, alone)]
        return [[*seq[: max_len - 1], self._stops[0]] for seq in ids]

    @property
    def stop_ids(self):
        return self._stops


@dataclass(frozen=True)
class Family:
    summary: str
    codec: type = Codec
    seq2seq: bool = True
    needs: tuple[str, ...] = ()
    allows: tuple[str, ...] = ()
    model_types: tuple[str, ...] = ()
    token_format: str = "{}"  # language families: how a code is written as its token


FAMILIES: Registry[Family] = Registry("families")
LANGUAGES = ("src_lang", "tgt_lang")
FAMILIES.add("marian", Family("OPUS-MT and models trained here; `source_prefix` for >>lang<< multi-target models",
                              allows=("source_prefix",), model_types=("marian",)))
FAMILIES.add("nllb", Family("NLLB-200: codes like deu_Latn", LanguageCodec, needs=LANGUAGES))
FAMILIES.add("m2m100", Family("M2M100: codes like de (tokens __de__)", LanguageCodec, needs=LANGUAGES,
                              model_types=("m2m_100",), token_format="__{}__"))
FAMILIES.add("mbart50", Family("mBART-50 many-to-many: codes like de_DE", LanguageCodec, needs=LANGUAGES,
                               model_types=("mbart",)))
FAMILIES.add("t5", Family("T5, mT5, MADLAD-400: `source_prefix` such as <2en> picks the target language",
                          needs=("source_prefix",), model_types=("t5", "mt5", "umt5")))
FAMILIES.add("causal", Family("decoder-only LMs (Llama, Gemma, Tower, EuroLLM, Qwen): a prompt or chat template",
                              CausalCodec, seq2seq=False, needs=("prompt",),
                              allows=("chat_template", "stop", *LANGUAGES)))


def codec(tokenizer, profile: Profile | None = None) -> Codec:
    profile = profile or Profile()
    return FAMILIES[profile.family].codec(tokenizer, profile)


def check(profile: Profile, where: str = "teacher") -> None:
    """Every key the family needs is set and no other is: an InputError naming the key otherwise."""
    if profile.family not in FAMILIES:
        raise InputError(f"config key {where}.family: unknown {profile.family!r} (one of {', '.join(FAMILIES)})")
    family = FAMILIES[profile.family]
    given = profile.given()
    for key in family.needs:
        if key not in given:
            raise InputError(f"config key {where}.{key}: a {profile.family} model needs it ({family.summary})")
    for key in given:
        if key not in (*family.needs, *family.allows):
            raise InputError(f"config key {where}.{key}: a {profile.family} model does not use it")
    if profile.family == "causal":
        for key in LANGUAGES:
            if "{" + key + "}" in profile.prompt and key not in given:
                raise InputError(f"config key {where}.{key}: {where}.prompt uses {{{key}}}")


def config_files(model: str | Path) -> tuple[dict, dict] | None:
    """config.json and tokenizer_config.json of a local directory or a model in the Hugging Face cache."""
    path = Path(str(model)).expanduser()
    if path.is_dir():
        read = {name: path / name for name in ("config.json", "tokenizer_config.json")}
    else:
        try:
            from huggingface_hub import try_to_load_from_cache
            read = {name: try_to_load_from_cache(str(model), name) for name in ("config.json", "tokenizer_config.json")}
        except (ImportError, ValueError):  # no hub library, or not a valid id (a path that does not exist)
            return None
    if not isinstance(read["config.json"], (str, Path)) or not Path(read["config.json"]).is_file():
        return None
    tokenizer = read["tokenizer_config.json"]
    tokenizer = json.loads(Path(tokenizer).read_text()) if isinstance(tokenizer, (str, Path)) and Path(tokenizer).is_file() else {}
    return json.loads(Path(read["config.json"]).read_text()), tokenizer


def detect(model: str | Path) -> str | None:
    """The family of a model from its config.json (None when the config cannot be read without a download);
    of a CTranslate2 conversion (mtdistill.ct2), the one its manifest records."""
    manifest = Path(str(model)).expanduser() / "mtdistill_ct2.json"
    if manifest.is_file():
        return json.loads(manifest.read_text()).get("family")
    files = config_files(model)
    if files is None:
        return None
    config, tokenizer = files
    model_type = config.get("model_type", "")
    if model_type == "m2m_100" and "nllb" in str(tokenizer.get("tokenizer_class", "")).lower():
        return "nllb"
    if not config.get("is_encoder_decoder", model_type in ("marian", "m2m_100", "mbart", "t5", "mt5", "umt5")):
        return "causal"
    for name, family in FAMILIES.items():
        if model_type in family.model_types:
            return name
    return None


def resolve(family: str, model: str | Path, where: str = "teacher") -> str:
    """`family`, or with `auto` the one detected from the model's config; an InputError when neither says."""
    if family != "auto":
        return family
    if str(model).startswith(("/", "./", "../", "~")) and not Path(str(model)).expanduser().is_dir():
        raise InputError(f"config key {where}.pretrained: {model}: directory not found")
    found = detect(model)
    if found is None:
        raise InputError(f"config key {where}.family: auto cannot tell the family of {str(model)!r} (no config.json"
                         f" there or in the Hugging Face cache, or an unknown model type): set it, one of"
                         f" {', '.join(FAMILIES)}")
    return found
