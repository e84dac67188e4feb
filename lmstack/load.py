"""Open a model from wherever it lives: a training run, a GGUF parameters file, a Hugging Face Llama
checkpoint directory, or the name of a known model (fetched on first use)."""

from __future__ import annotations

from pathlib import Path

import torch

from lmstack.errors import LmstackError
from lmstack.io.checkpoint import load_checkpoint
from lmstack.io.files import read_json
from lmstack.io.gguf_file import read_gguf, tokenizer_from_gguf
from lmstack.io.hf import is_hf_checkpoint, read_hf
from lmstack.io.models import resolve_model
from lmstack.io.tokenizer import Tokenizer
from lmstack.model import ModelConfig, Transformer, rope_tables


def _empty_model(cfg: ModelConfig) -> Transformer:
    """A Transformer whose weights are placeholders (on the meta device) for _fill to replace: drawing
    random initial values for a 135M-parameter model only to overwrite them costs seconds, and
    allocating them at all would hold a second copy of the weights while loading."""
    with torch.device("meta"):
        model = Transformer(cfg)
    model.rope_cos, model.rope_sin = rope_tables(cfg.head_dim, cfg.max_seq_len, cfg.rope_theta, cfg.rope_scaling)
    return model


def _fill(model: Transformer, sd: dict, path: Path) -> None:
    """Make the loaded tensors the model's parameters (no copy), as float32 like a freshly built model."""
    try:
        model.load_state_dict({k: v.float() for k, v in sd.items()}, assign=True)
    except RuntimeError as e:
        raise LmstackError(f"{path}: weights do not match the model config ({str(e).splitlines()[0]})") from None
    if model.config.tie_embeddings:  # one tensor for both, whatever the file held
        model.output.weight = model.tok_embeddings.weight


def load_model(path: str | Path) -> tuple[Transformer, Tokenizer, dict]:
    """(model in eval mode, tokenizer, info): info is run.json for a run, the metadata of a GGUF
    file, or config.json of a HF checkpoint."""
    path = resolve_model(path)
    if path.is_dir() and (path / "ckpt.pt").exists():
        state = load_checkpoint(path / "ckpt.pt")
        model = _empty_model(ModelConfig.from_dict(state["model_config"]))
        sd = state["model"]
        info = read_json(path / "run.json", "run file") if (path / "run.json").exists() else {}
        if not isinstance(info, dict):
            raise LmstackError(f"{path / 'run.json'}: run file must hold a JSON object")
        # a fine-tuned real model keeps its own chat template (run.json), not lmstack's ChatML
        tok = Tokenizer.load(path / "tokenizer.json", chat_template=info.get("chat_template"))
    elif path.is_dir() and is_hf_checkpoint(path):
        cfg, sd, tok, info = read_hf(path)
        model = _empty_model(cfg)
    elif path.is_dir():
        raise LmstackError(f"{path} is neither a training run (no ckpt.pt) nor a Hugging Face checkpoint "
                           "(config.json + *.safetensors)")
    else:
        g = read_gguf(path)
        model, sd, tok, info = _empty_model(g.config), g.state_dict, tokenizer_from_gguf(g.metadata), g.metadata
    _fill(model, sd, path)
    model.eval()
    return model, tok, info
