"""Retrieval-augmented KD (ReAugKD, Zhang et al. 2023) at the token level: (1 - alpha) CE(labels) +
alpha tau^2 KL_truncated(teacher top-k_v || student) + relational_weight * L_rel, the teacher's
distributions read from the knowledge base (`mtdistill.build_kb`, --kb) rather than computed.

L_rel aligns the student's similarities with the teacher's: for a sampled label token t, over the
`neighbours` KB entries j nearest to its teacher key z_t (itself excluded),
KL(softmax_j(cos(z_t, z_j) / relational_tau) || softmax_j(cos(P h_t, z_j) / relational_tau)), h_t the
student's final decoder state and P its projection head. The head trains as a submodule of the
model (optimizer, checkpoints, DDP) and is saved beside it as retrieval_head.pt, for decoding with
retrieval. The KB is built on exactly the training labels: row i, position t is entry
row_offsets[i] + t.
"""

from __future__ import annotations

from .base import register
from .cross_entropy import CrossEntropy
from .word_kd import WordKD

HEAD = "retrieval_head"  # the head's submodule name on the model while it trains
SEARCH_CHUNK = 4096  # KB entries searched for their neighbours at once


def relational_kl(teacher_keys, student_queries, neighbour_keys, tau: float):
    """Sum over rows of KL(A^T || A^S), A = softmax over the k neighbours of cosine / tau: (n, d), (n, d), (n, k, d)."""
    import torch.nn.functional as F

    neighbours = F.normalize(neighbour_keys.float(), dim=-1)
    teacher = F.normalize(teacher_keys.float(), dim=-1)
    student = F.normalize(student_queries.float(), dim=-1)
    log_a_teacher = F.log_softmax((neighbours @ teacher.unsqueeze(-1)).squeeze(-1) / tau, -1)
    log_a_student = F.log_softmax((neighbours @ student.unsqueeze(-1)).squeeze(-1) / tau, -1)
    return (log_a_teacher.exp() * (log_a_teacher - log_a_student)).sum()


def nearest_others(kb, k: int, name: str, disable_progress: bool = False):
    """(size, k) ids of each KB entry's k nearest other entries by the teacher keys, best first."""
    import numpy as np
    from tqdm import tqdm

    from ..core.io import InputError

    # int32 where it fits: this table is held for the whole run (10M entries x 16 neighbours: 640 MB)
    neighbours = np.empty((kb.size, k), dtype=np.int32 if kb.size < 2**31 else np.int64)
    for start in tqdm(range(0, kb.size, SEARCH_CHUNK), desc="kb neighbours", mininterval=30, unit="chunk",
                      disable=disable_progress):
        ids = np.arange(start, min(start + SEARCH_CHUNK, kb.size), dtype=np.int64)
        _, found = kb.search(kb.keys(ids), k + 1)
        if (found < 0).any():  # FAISS pads with -1 where an (approximate) index finds fewer
            raise InputError(f"{name}: its index found fewer than {k + 1} entries for some keys: "
                             "lower --neighbours or rebuild it with a flat index")
        own = found == ids[:, None]
        # an entry whose key has more than k exact duplicates may not find itself: then it drops its last
        own[~own.any(1), -1] = True
        own &= np.cumsum(own, 1) == 1
        neighbours[start:start + len(ids)] = found[~own].reshape(len(ids), k)
    return neighbours


@register
class ReAugKD(CrossEntropy):
    name = "reaugkd"
    # `betas`: the kNN weights decoding with retrieval tries on dev (the workflow's grid), not a train option
    keys = {"alpha": 0.5, "tau": 1.0, "relational_weight": 1.0, "relational_tau": 0.1, "neighbours": 16,
            "relational_rows": 512, "betas": [0, 0.1, 0.2, 0.3, 0.5, 0.7]}
    needs_teacher = False  # the teacher's keys and distributions are the KB's
    needs_teacher_vocabulary = True  # the KB's values are teacher token ids
    arguments = {
        "alpha": WordKD.arguments["alpha"],
        "tau": WordKD.arguments["tau"],
        "kb": {"nargs": "+", "metavar": "SHARD_DIR", "help": "reaugkd: the knowledge base's shard directories "
                                                             "(mtdistill.build_kb on these labels), in order"},
        "relational_weight": {"type": float,
                              "help": f"reaugkd: weight of the relational loss ({keys['relational_weight']})"},
        "relational_tau": {"type": float,
                           "help": f"reaugkd: temperature of the similarity softmaxes ({keys['relational_tau']})"},
        "neighbours": {"type": int,
                       "help": f"reaugkd: KB neighbours of each token in the relational loss ({keys['neighbours']})"},
        "relational_rows": {"type": int, "help": f"reaugkd: label tokens per batch in the relational loss, "
                                                 f"sampled ({keys['relational_rows']})"},
    }
    checkpointed = ("window",)

    def __init__(self, kb: list[str], alpha: float = 0.5, tau: float = 1.0, relational_weight: float = 1.0,
                 relational_tau: float = 0.1, neighbours: int = 16, relational_rows: int = 512,
                 label_smoothing: float = 0.0, max_len: int = 128, seed: int = 1):
        import torch

        super().__init__(label_smoothing)
        self.kb_paths, self.alpha, self.tau = [str(path) for path in kb], alpha, tau
        self.relational_weight, self.relational_tau = relational_weight, relational_tau
        self.neighbours, self.relational_rows, self.max_len, self.seed = neighbours, relational_rows, max_len, seed
        self.generator = torch.Generator()  # draws the relational rows; checkpointed, so a resumed run draws alike
        self.window = {"ce": 0.0, "kl": 0.0, "relational": 0.0, "tokens": 0}

    @classmethod
    def from_args(cls, args):
        return cls(args.kb, args.alpha, args.tau, args.relational_weight, args.relational_tau, args.neighbours,
                   args.relational_rows, args.label_smoothing, max_len=args.max_len, seed=args.seed)

    @classmethod
    def check_args(cls, p, args) -> None:
        super().check_args(p, args)
        if not args.kb:
            p.error("--objective reaugkd needs --kb SHARD_DIR... (the knowledge base mtdistill.build_kb built "
                    "on these labels)")
        if args.task != "seq2seq" or args.direction != "l2r":
            p.error("--objective reaugkd: the KB holds the teacher's left-to-right translation states: "
                    "drop --task and --direction")
        if not 0 <= args.alpha <= 1:
            p.error(f"--alpha {args.alpha}: a weight between 0 and 1")
        for key in ("tau", "relational_tau"):
            if not getattr(args, key) > 0:
                p.error(f"--{key.replace('_', '-')} {getattr(args, key)}: a temperature, above 0")
        if args.relational_weight < 0:
            p.error(f"--relational-weight {args.relational_weight}: at least 0")
        for key in ("neighbours", "relational_rows"):
            if getattr(args, key) < 1:
                p.error(f"--{key.replace('_', '-')} {getattr(args, key)}: at least 1")

    def kb_name(self) -> str:
        return f"--kb {' '.join(self.kb_paths)}"

    def check_kb(self, kb, table, pairs) -> None:
        """The KB must be of these labels, every trained position stored, and have the neighbours asked for."""
        from ..core.io import InputError

        if list(kb.sent_ids) != list(table.sent_id):
            raise InputError(f"{self.kb_name()}: its sentences are not the training table's ({len(kb.sent_ids)} rows "
                             f"vs {len(table)}): rebuild it with mtdistill.build_kb on these labels")
        short = [i for i, (_, label) in enumerate(pairs) if len(label) > kb.row_lengths[i]]
        if short:
            i = short[0]
            raise InputError(f"{self.kb_name()}: built with max_len {kb.max_len}, but training uses max_len "
                             f"{self.max_len}: {len(short)} label(s) are longer than their stored rows (row {i}: "
                             f"{len(pairs[i][1])} tokens, {kb.row_lengths[i]} stored); rebuild it with build_kb "
                             f"--max-len {self.max_len}")
        if self.neighbours >= kb.size:
            raise InputError(f"{self.kb_name()}: {kb.size} entries, too few for --neighbours {self.neighbours} "
                             "other entries each")

    def prepare(self, model, tokenizer, table, pairs, device) -> None:
        import torch

        from .. import models
        from ..retrieval import head
        from ..retrieval.kb import KnowledgeBase
        from .teacher import check_shared_vocabulary

        self.kb = KnowledgeBase.load(self.kb_paths)
        self.check_kb(self.kb, table, pairs)
        check_shared_vocabulary(models.load_tokenizer(self.kb.teacher), tokenizer, self.kb.teacher)
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        self.neighbour_ids = nearest_others(self.kb, self.neighbours, self.kb_name(), disable_progress=rank > 0)
        self.generator.manual_seed(self.seed + rank)  # under torchrun each rank samples its own rows
        # a submodule: the optimizer, checkpoints, DDP and the best-state copies all include it
        setattr(model, HEAD, head.new_head(model.config.d_model, self.kb.dim, self.seed).to(device))

    def entry_ids(self, labels, indices):
        """(n,) KB entry ids of the label tokens, in the order of labels[labels != -100]."""
        import numpy as np

        lengths = (labels != -100).sum(1).tolist()
        offsets = self.kb.row_offsets[np.asarray(list(indices))]
        return np.concatenate([offset + np.arange(length) for offset, length in zip(offsets, lengths)])

    def relational_term(self, queries, entries, device):
        """L_rel of the sampled rows, scaled up to all `len(entries)` label tokens."""
        import torch

        n = len(entries)
        if n > self.relational_rows:
            rows = torch.randperm(n, generator=self.generator)[:self.relational_rows]
        else:
            rows = torch.arange(n)
        chosen = entries[rows.numpy()]
        teacher_keys = torch.from_numpy(self.kb.keys(chosen)).to(device)
        neighbours = self.neighbour_ids[chosen].astype("int64")
        neighbour_keys = torch.from_numpy(self.kb.keys(neighbours.ravel())).to(device).view(*neighbours.shape, -1)
        relational = relational_kl(teacher_keys, queries[rows.to(device)], neighbour_keys, self.relational_tau)
        return relational * (n / len(rows))

    def __call__(self, model, batch, labels, indices):
        import torch

        from ..retrieval.head import student_states
        from ..training.batches import summed_cross_entropy
        from .teacher import truncated_kl

        outputs = model(**batch, output_hidden_states=True)
        mask = labels != -100
        tokens = int(mask.sum())
        ce = summed_cross_entropy(outputs.logits, labels, self.label_smoothing)
        entries = self.entry_ids(labels, indices)
        value_ids, value_logprobs = (torch.from_numpy(v).to(labels.device) for v in self.kb.values(entries))
        student_logits = outputs.logits[mask]
        kl = truncated_kl(value_ids, value_logprobs, student_logits, torch.ones(tokens, device=labels.device), self.tau)
        # under DDP the head is the wrapped model's; it is used on every step, as DDP's reducer expects
        queries = getattr(getattr(model, "module", model), HEAD)(student_states(outputs)[mask])
        relational = self.relational_term(queries, entries, labels.device)
        self.window["ce"] += ce.item()
        self.window["kl"] += kl.item()
        self.window["relational"] += relational.item()
        self.window["tokens"] += tokens
        loss = (1 - self.alpha) * ce + self.alpha * self.tau**2 * kl + self.relational_weight * relational
        return loss, tokens

    def window_metrics(self) -> dict:
        tokens = max(self.window["tokens"], 1)
        metrics = {"ce_per_token": self.window["ce"] / tokens, "kl_per_token": self.window["kl"] / tokens,
                   "relational_per_token": self.window["relational"] / tokens}
        self.window = {"ce": 0.0, "kl": 0.0, "relational": 0.0, "tokens": 0}
        return metrics

    def state_dict(self) -> dict:
        return {**super().state_dict(), "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.generator.set_state(state["generator"])

    def finish(self, model) -> None:
        """The head leaves the model (model.safetensors is the translation model alone) for retrieval_head.pt."""
        self.head = getattr(model, HEAD)
        delattr(model, HEAD)

    def write(self, outdir) -> None:
        from ..retrieval.head import save_head

        save_head(self.head, outdir, neighbours=self.neighbours, relational_tau=self.relational_tau, kb=self.kb_paths,
                  kb_dim=self.kb.dim)

    def summary(self) -> dict:
        return {"kb_size": self.kb.size, "kb_dim": self.kb.dim, "neighbours": self.neighbours,
                "relational_tau": self.relational_tau, "relational_weight": self.relational_weight}
