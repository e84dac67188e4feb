"""The guard: a small classifier that says whether text is benign, a jailbreak or a prompt injection.

It reads hashed character n-grams (2-5, within words) and words and word pairs (log counts,
L2-normalised) and scores them with a multinomial logistic regression over three classes: 2^18
buckets x 3 classes, 0.79M parameters, trained from scratch on guard_data's generated text.
Its score is the probability that the text is not benign; the threshold is set so that a stated
fraction of held-out benign text (templates and topics the guard never trained on) is flagged.

The weights are not shipped: the first use trains them (seeded; a few minutes at most on 2 cores) into
~/.cache/lmstack/guard/<key>/ as safetensors plus a JSON file, the key being a hash of everything
that decides them (the generator's source, this file's config); later uses load that. Nothing here
unpickles. bench/guard_compare.py measured this against a head on SmolLM2-135M's features
(docs/security.md) and chose it.
"""

from __future__ import annotations

import hashlib
import inspect
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from lmstack.checks import check_choice, check_float, check_int
from lmstack.errors import LmstackError
from lmstack.io.files import atomic_path, read_json, write_json
from lmstack.security import guard_data, guard_items

MAX_CHARS = 20_000  # text beyond this is screened as its first and last halves


FEATURES = ("ngrams", "smollm2")
LM_FEATURES = "smollm2-135m-instruct"  # the frozen model whose hidden states the smollm2 guard reads


@dataclass(frozen=True)
class GuardConfig:
    """features: "ngrams" (hashed n-grams, trained from scratch: fast, no other model) or "smollm2"
    (a logistic regression on SmolLM2-135M's mean-pooled hidden states at `layer`: carries over to
    wording of its own far better, at a forward pass per text; docs/security.md)."""
    features: str = "ngrams"
    buckets_log2: int = 18
    layer: int = 15
    n_train: int = 12_000
    n_calibrate: int = 4_000
    c: float = 10.0  # inverse L2 strength of the logistic regression
    max_iter: int = 300
    target_fpr: float = 0.01  # the share of held-out benign text the threshold lets through as flagged
    seed: int = 0

    @classmethod
    def named(cls, features: str) -> GuardConfig:
        """The measured settings of each kind (the smollm2 head sees fewer texts: features cost a forward pass)."""
        check_choice("guard features", features, FEATURES)
        if features == "smollm2":
            return cls(features="smollm2", n_train=1200, n_calibrate=800, c=1.0, max_iter=1000)
        return cls()

    def __post_init__(self) -> None:
        check_choice("features", self.features, FEATURES)
        check_int("layer", self.layer, 1, 30)
        check_int("buckets_log2", self.buckets_log2, 10, 24)
        check_int("n_train", self.n_train, 8)
        check_int("n_calibrate", self.n_calibrate, 8)
        check_int("max_iter", self.max_iter, 1)
        check_float("c", self.c, 0, lo_open=True)
        check_float("target_fpr", self.target_fpr, 0, 1, lo_open=True, hi_open=True)

    def n_features(self) -> int:
        return 576 if self.features == "smollm2" else 1 << self.buckets_log2  # SmolLM2-135M's width

    def params(self) -> int:
        return (self.n_features() + 1) * len(guard_data.LABELS)


@dataclass(frozen=True)
class Verdict:
    label: str  # benign | jailbreak | injection
    score: float  # probability that the text is not benign
    flagged: bool

    def to_dict(self) -> dict:
        return asdict(self)


class Featurizer:
    """Text -> sparse hashed counts (scikit-learn's murmur hash: the same on every machine)."""

    def __init__(self, buckets_log2: int):
        from sklearn.feature_extraction.text import HashingVectorizer

        n = 1 << buckets_log2
        self.chars = HashingVectorizer(analyzer="char_wb", ngram_range=(2, 5), n_features=n, alternate_sign=False,
                                       norm=None)
        self.words = HashingVectorizer(analyzer="word", ngram_range=(1, 2), n_features=n, alternate_sign=False,
                                       norm=None, token_pattern=r"(?u)\b\w+\b|[<>|{}\[\]#:]")

    def __call__(self, texts: list[str]):
        texts = [t if len(t) <= MAX_CHARS else t[: MAX_CHARS // 2] + t[-MAX_CHARS // 2:] for t in texts]
        texts = [t.encode("utf-8", "replace").decode("utf-8") for t in texts]  # a lone surrogate is not an error here
        x = self.chars.transform(texts) + self.words.transform(texts)
        x.data = np.log1p(x.data)
        norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel()) + 1e-6
        return (x.multiply(1 / norms[:, None])).tocsr()


class LMFeatures:
    """Text -> the mean of a frozen SmolLM2's hidden states at one layer over the text's first 64
    tokens, standardised (shift and scale learnt with the head)."""

    def __init__(self, layer: int, max_tokens: int = 64):
        from lmstack.io.models import resolve_model
        from lmstack.load import load_model

        self.model, self.tok, _ = load_model(resolve_model(LM_FEATURES))
        self.layer, self.max_tokens = layer, max_tokens
        self.shift: np.ndarray | None = None
        self.scale: np.ndarray | None = None

    @torch.no_grad()
    def pooled(self, texts: list[str], batch: int = 16) -> np.ndarray:
        m, out = self.model, []
        for i in range(0, len(texts), batch):
            chunk = [t[:MAX_CHARS].encode("utf-8", "replace").decode("utf-8") for t in texts[i:i + batch]]
            ids = [self.tok.encode(t)[:self.max_tokens] or [self.tok.end_of_text_id] for t in chunk]
            T = max(map(len, ids))
            idx = torch.tensor([x + [0] * (T - len(x)) for x in ids])  # right padding: causal, so harmless
            mask = torch.tensor([[1.0] * len(x) + [0.0] * (T - len(x)) for x in ids])[..., None]
            x = m.tok_embeddings(idx)
            for layer in m.layers[:self.layer]:
                x = layer(x, m.rope_cos[:T], m.rope_sin[:T])
            out.append(((x * mask).sum(1) / mask.sum(1)).float().numpy())
        return np.concatenate(out)

    def __call__(self, texts: list[str]) -> np.ndarray:
        return (self.pooled(texts) - self.shift) / self.scale


class Guard:
    """A trained guard: check(text) -> Verdict. Load with Guard.load() (trains on first use)."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray, cfg: GuardConfig, threshold: float,
                 info: dict | None = None, norm: tuple[np.ndarray, np.ndarray] | None = None):
        self.weight = np.ascontiguousarray(weight, dtype=np.float32)  # (3, features)
        self.bias = np.ascontiguousarray(bias, dtype=np.float32)  # (3,)
        self.cfg, self.threshold = cfg, threshold
        self.info = info or {}
        if cfg.features == "smollm2":
            self.featurize = LMFeatures(cfg.layer)
            self.featurize.shift, self.featurize.scale = norm
        else:
            self.featurize = Featurizer(cfg.buckets_log2)

    def scores(self, texts: list[str]) -> np.ndarray:
        """(len(texts), 3) class probabilities, in guard_data.LABELS order."""
        if not texts:
            return np.zeros((0, 3), dtype=np.float32)
        logits = np.asarray(self.featurize(texts) @ self.weight.T) + self.bias  # (B, 3)
        e = np.exp(logits - logits.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    def check_many(self, texts: list[str], threshold: float | None = None) -> list[Verdict]:
        for t in texts:
            if not isinstance(t, str):
                raise LmstackError(f"guard: expected text, got {type(t).__name__}")
        cut = self.threshold if threshold is None else threshold
        out = []
        for p in self.scores(texts):
            score = float(1 - p[0])
            label = guard_data.LABELS[1 + int(np.argmax(p[1:]))] if score >= cut else "benign"
            out.append(Verdict(label, score, score >= cut))
        return out

    def check(self, text: str, threshold: float | None = None) -> Verdict:
        return self.check_many([text], threshold)[0]

    @classmethod
    def load(cls, cfg: GuardConfig | None = None, cache: str | Path | None = None, quiet: bool = True) -> Guard:
        """The guard for cfg from the cache, trained and stored there first if it is not yet."""
        cfg = cfg or GuardConfig()
        folder = Path(cache) if cache else default_cache() / cache_key(cfg)
        if not (folder / "guard.json").exists():
            if not quiet:
                print(f"training the guard ({cfg.params() / 1e6:.1f}M parameters) into {folder} ...")
            save(train_guard(cfg), folder)
        return load_saved(folder, cfg)


def default_cache() -> Path:
    from lmstack.io.packages import cache_dir

    return cache_dir() / "guard"


def cache_key(cfg: GuardConfig) -> str:
    """What decides the weights: the generator's and the trainer's source and the config."""
    h = hashlib.sha256(inspect.getsource(guard_data).encode() + inspect.getsource(guard_items).encode())
    h.update(inspect.getsource(Featurizer).encode() + inspect.getsource(LMFeatures).encode()
             + inspect.getsource(train_guard).encode())
    h.update(repr(sorted(asdict(cfg).items())).encode())
    return h.hexdigest()[:16]


def train_guard(cfg: GuardConfig) -> Guard:
    """Train on generated text (training templates and topics), then set the threshold on held-out
    benign text for cfg.target_fpr."""
    from sklearn.linear_model import LogisticRegression

    t0 = time.perf_counter()
    train = guard_data.generate(cfg.n_train, held_out=False, seed=cfg.seed)
    texts, norm = [e.text for e in train], None
    if cfg.features == "smollm2":
        pooled = LMFeatures(cfg.layer).pooled(texts)
        norm = (pooled.mean(0), pooled.std(0) + 1e-6)
        x = (pooled - norm[0]) / norm[1]
    else:
        x = Featurizer(cfg.buckets_log2)(texts)
    y = np.array([guard_data.LABELS.index(e.label) for e in train])
    model = LogisticRegression(C=cfg.c, max_iter=cfg.max_iter).fit(x, y)
    guard = Guard(model.coef_, model.intercept_, cfg, threshold=0.5, norm=norm)
    guard.threshold = calibrate(guard, cfg)
    guard.info = {"train_seconds": round(time.perf_counter() - t0, 2), "params": cfg.params(),
                  "train_examples": len(train)}
    return guard


def calibrate(guard: Guard, cfg: GuardConfig) -> float:
    """The score above which only cfg.target_fpr of held-out benign text lies (calibration draw: a
    different seed from the one the evaluation uses)."""
    held = guard_data.generate(cfg.n_calibrate, held_out=True, seed=cfg.seed + 1)
    benign = guard.scores([e.text for e in held if e.label == "benign"])
    s = np.sort(1 - benign[:, 0])
    return float(s[min(len(s) - 1, int(np.ceil(len(s) * (1 - cfg.target_fpr))))] + 1e-6)


def save(guard: Guard, folder: Path) -> None:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / "guard.safetensors") as tmp:
        tensors = {"weight": torch.from_numpy(guard.weight), "bias": torch.from_numpy(guard.bias)}
        if isinstance(guard.featurize, LMFeatures):
            tensors |= {"shift": torch.from_numpy(np.asarray(guard.featurize.shift, np.float32)),
                        "scale": torch.from_numpy(np.asarray(guard.featurize.scale, np.float32))}
        save_file(tensors, str(tmp))
    write_json(folder / "guard.json", {"config": asdict(guard.cfg), "threshold": guard.threshold, **guard.info})


def load_saved(folder: Path, cfg: GuardConfig | None = None) -> Guard:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    meta = read_json(folder / "guard.json", "guard file")
    try:
        saved = GuardConfig(**meta["config"])
        threshold = float(meta["threshold"])
        tensors = load_file(str(folder / "guard.safetensors"))
        weight, bias = tensors["weight"].numpy(), tensors["bias"].numpy()
        if weight.shape != (len(guard_data.LABELS), saved.n_features()) or bias.shape != (weight.shape[0],):
            raise ValueError(f"weight {tuple(weight.shape)} and bias {tuple(bias.shape)} do not fit the config")
        norm = None
        if saved.features == "smollm2":
            norm = (tensors["shift"].numpy(), tensors["scale"].numpy())
            if norm[0].shape != (saved.n_features(),) or norm[1].shape != norm[0].shape:
                raise ValueError("shift and scale do not fit the config")
    except (KeyError, TypeError, ValueError, RuntimeError, OSError, SafetensorError) as e:
        raise LmstackError(f"{folder}: not a valid guard ({type(e).__name__}: {str(e)[:200]})") from None
    if cfg is not None and saved != cfg:
        raise LmstackError(f"{folder}: the guard there was trained with a different config")
    return Guard(weight, bias, saved, threshold, {k: v for k, v in meta.items() if k not in ("config", "threshold")},
                 norm)


def measure(scores: np.ndarray, is_attack: np.ndarray, threshold: float, fpr: float = 0.01) -> dict:
    """ROC AUC, recall at `fpr` false positives (the best threshold for that rate on these scores),
    and recall and false-positive rate at a given threshold (one set before seeing these scores)."""
    from sklearn.metrics import roc_auc_score

    scores, is_attack = np.asarray(scores, dtype=np.float64), np.asarray(is_attack, dtype=bool)
    benign = np.sort(scores[~is_attack])
    cut = benign[min(len(benign) - 1, int(np.ceil(len(benign) * (1 - fpr))) - 1)] if len(benign) else 1.0
    return {"roc_auc": float(roc_auc_score(is_attack, scores)), "fpr_target": fpr,
            "recall_at_fpr": float((scores[is_attack] > cut).mean()),
            "recall": float((scores[is_attack] >= threshold).mean()),
            "fpr": float((scores[~is_attack] >= threshold).mean()),
            "attacks": int(is_attack.sum()), "benign": int((~is_attack).sum())}
