"""Pretraining: corpus -> tokenizer -> token shards -> model trained on next-token prediction.

A run lives in one directory (runs/<name>/): run.json says what it was made from, tokenizer.json,
ckpt.pt, metrics.jsonl and loss.png sit beside it, and `lmstack export` adds model.gguf.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from lmstack.checks import ConfigError, check_float, check_int
from lmstack.errors import LmstackError
from lmstack.io.corpora import load_documents, split_documents
from lmstack.io.files import read_json, write_json
from lmstack.io.shards import Batches, cached_dataset
from lmstack.io.tokenizer import SPECIAL_TOKENS, Tokenizer, train_tokenizer
from lmstack.model import ModelConfig, Transformer, preset
from lmstack.train import distributed
from lmstack.train.loop import TrainConfig, TrainResult, check_run_dir, resolve_device, train

MODEL_FIELDS = ("dim", "n_layers", "n_heads", "n_kv_heads", "ffn_dim", "max_seq_len", "rope_theta", "rope_scaling",
                "norm_eps", "tie_embeddings")  # what model_overrides may set (the tokenizer sets vocab_size)


@dataclass
class DataConfig:
    source: str = "shakespeare"
    vocab_size: int = 4096
    tokenizer: str | None = None  # an existing tokenizer.json instead of training one
    val_fraction: float = 0.05
    split_seed: int = 0
    copy_fraction: float = 0.0  # share of training rows that repeat a shuffled span of themselves (shards.py)

    def __post_init__(self) -> None:
        if not isinstance(self.source, str) or not self.source:
            raise ConfigError("data source must be a corpus name or a path/glob")
        if self.tokenizer is None:  # a given tokenizer brings its own vocabulary
            check_int("vocab_size", self.vocab_size, 256 + len(SPECIAL_TOKENS), 1 << 20)
        check_float("val_fraction", self.val_fraction, 0, 1, lo_open=True, hi_open=True)
        check_int("split_seed", self.split_seed, 0)
        check_float("copy_fraction", self.copy_fraction, 0, 1)


@dataclass
class PretrainConfig:
    out_dir: str = "runs/pretrain"
    data: DataConfig = field(default_factory=DataConfig)
    preset: str = "small"
    model_overrides: dict = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.model_overrides) - set(MODEL_FIELDS))
        if unknown:
            raise ConfigError(f"model_overrides: unknown {', '.join(unknown)}; known: {', '.join(MODEL_FIELDS)}")
        self.model_config(vocab_size=self.data.vocab_size)  # the shape is checked now, before any data

    def model_config(self, vocab_size: int) -> ModelConfig:
        return preset(self.preset, vocab_size=vocab_size, **self.model_overrides)


def prepare_data(dc: DataConfig, run_dir: Path, quiet: bool = False, reuse: bool = False,
                 write: bool = True) -> tuple[Tokenizer, Path]:
    """Load and split the corpus, get a tokenizer, and tokenize once into a cache keyed by both.

    With reuse (resuming), the run's own tokenizer.json is kept rather than retrained. Without write,
    nothing is written (the other ranks of a distributed run read what rank 0 prepared).
    """
    docs = load_documents(dc.source)
    train_docs, val_docs = split_documents(docs, dc.val_fraction, dc.split_seed)
    tok_path = run_dir / "tokenizer.json"
    if dc.tokenizer:
        tok = Tokenizer.load(dc.tokenizer)
    elif reuse and tok_path.exists():
        tok = Tokenizer.load(tok_path)
    else:
        if not quiet:
            print(f"training a {dc.vocab_size}-token BPE tokenizer on {len(train_docs)} documents ...")
        tok = train_tokenizer((d.text for d in train_docs), dc.vocab_size)
    if write:
        run_dir.mkdir(parents=True, exist_ok=True)
        tok.save(tok_path)
    return tok, cached_dataset(train_docs, val_docs, tok, quiet=quiet)


def build_model(cfg: PretrainConfig, vocab_size: int) -> Transformer:
    mc = cfg.model_config(vocab_size)
    torch.manual_seed(cfg.train.seed)
    return Transformer(mc)


def sampler(tok: Tokenizer, prompt: str = "\n", n: int = 96, temperature: float = 0.8, seed: int = 0):
    """A sample_fn for the training loop: a short seeded continuation of `prompt`."""

    def sample(model: Transformer) -> str:
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        idx = torch.tensor([tok.encode(prompt) or [tok.end_of_text_id]], device=device)
        g = torch.Generator(device=device).manual_seed(seed)
        out = model.generate(idx, n, temperature=temperature, top_k=50, generator=g, stop_id=tok.end_of_text_id)
        model.train(was_training)
        return prompt + tok.decode(out[0, idx.shape[1] :].tolist(), skip_special=True)

    return sample


def pretrain(cfg: PretrainConfig, resume: bool = False, progress: bool = True, overwrite: bool = False) -> TrainResult:
    run_dir = Path(cfg.out_dir)
    run_json = run_dir / "run.json"
    check_run_dir(run_dir, resume, overwrite)
    if resume and run_json.exists():
        saved = read_json(run_json, "run file")
        saved_data = saved.get("data") if isinstance(saved, dict) else saved
        if isinstance(saved_data, dict):
            saved_data = {"copy_fraction": 0.0, **saved_data}  # runs from before copy rows had none
        if saved_data != asdict(cfg.data):
            raise LmstackError(f"{run_dir} was trained on different data settings: {saved_data!r}")
    resolve_device(cfg.train.device)  # an absent device is an error now, not after tokenizing
    cluster = distributed.setup(cfg.train.device)  # under torchrun: rank 0 prepares, the others then read
    if cluster.is_main:
        tok, data_dir = prepare_data(cfg.data, run_dir, quiet=not progress, reuse=resume)
    cluster.barrier()
    if not cluster.is_main:
        tok, data_dir = prepare_data(cfg.data, run_dir, quiet=True, reuse=True, write=False)
    model = build_model(cfg, tok.vocab_size)
    data = Batches(data_dir, model.config.max_seq_len, cfg.train.batch_size, seed=cfg.train.seed,
                   copy_fraction=cfg.data.copy_fraction)
    if cluster.is_main:
        write_json(run_json, {**asdict(cfg), "data_dir": str(data_dir), "model_config": model.config.to_dict(),
                              "world_size": cluster.world_size, "params": model.num_params(),
                              "params_non_embedding": model.num_params(True)})
    if progress and cluster.is_main:
        print(f"model: {model.num_params() / 1e6:.2f}M parameters "
              f"({model.num_params(True) / 1e6:.2f}M non-embedding), {model.config}")
    return train(model, data, cfg.train, run_dir, token_bytes=tok.token_byte_lengths(), resume=resume,
                 sample_fn=sampler(tok, seed=cfg.train.seed), progress=progress)
