"""Open a model from wherever it lives: a training run directory or a GGUF parameters file."""

from __future__ import annotations

import json
from pathlib import Path

from lmstack.errors import LmstackError
from lmstack.io.gguf_file import read_gguf, tokenizer_from_gguf
from lmstack.io.tokenizer import Tokenizer
from lmstack.model import ModelConfig, Transformer
from lmstack.train.checkpoint import load_checkpoint


def load_model(path: str | Path) -> tuple[Transformer, Tokenizer, dict]:
    """(model in eval mode, tokenizer, info): info is run.json for a run, GGUF metadata for a file."""
    path = Path(path)
    if path.is_dir():
        if not (path / "ckpt.pt").exists():
            raise LmstackError(f"{path} is not a training run (no ckpt.pt)")
        state = load_checkpoint(path / "ckpt.pt")
        model = Transformer(ModelConfig.from_dict(state["model_config"]))
        sd = state["model"]
        tok = Tokenizer.load(path / "tokenizer.json")
        info = json.loads((path / "run.json").read_text()) if (path / "run.json").exists() else {}
    else:
        g = read_gguf(path)
        model, sd, tok, info = Transformer(g.config), g.state_dict, tokenizer_from_gguf(g.metadata), g.metadata
    try:
        model.load_state_dict(sd)
    except RuntimeError as e:
        raise LmstackError(f"{path}: weights do not match the model config ({str(e).splitlines()[0]})") from None
    model.eval()
    return model, tok, info
