"""Open a model from wherever it lives: a training run, a GGUF parameters file, a Hugging Face Llama
checkpoint directory, or the name of a known model (fetched on first use)."""

from __future__ import annotations

import ctypes
from pathlib import Path
from types import SimpleNamespace

import torch

from lmstack.errors import LmstackError
from lmstack.io.checkpoint import load_checkpoint
from lmstack.io.files import read_json
from lmstack.io.gguf_file import TensorFile, read_gguf, tokenizer_from_gguf
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


def lora_update_of(path: str | Path) -> dict[str, torch.Tensor] | None:
    """A finished LoRA run's factors, kept beside its merged weights (train/lora.py `lora_update`), or
    None: not a run, or a run saved before they were kept."""
    path = resolve_model(path)
    if not (path.is_dir() and (path / "ckpt.pt").exists()):
        return None
    update = load_checkpoint(path / "ckpt.pt").get("lora_update")
    return update if isinstance(update, dict) and update else None


def load_model(path: str | Path, lazy: bool = False) -> tuple[Transformer, Tokenizer, dict]:
    """(model in eval mode, tokenizer, info): info is run.json for a run, the metadata of a GGUF
    file, or config.json of a HF checkpoint. lazy=True, for the engine: from a GGUF file, a stand-in
    whose weights are read from the file each time they are asked for (`lazy_model`)."""
    path = resolve_model(path)
    if lazy and path.is_file():
        f = TensorFile(path)
        return lazy_model(f), tokenizer_from_gguf(f.metadata), f.metadata
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


class _FileRows:
    """A matrix still in the file, read a block of rows at a time (`m[i:j]`; quant.RowSource)."""

    def __init__(self, file: TensorFile, name: str):
        self._file, self._name, self.shape = file, name, file.shape(name)

    def __getitem__(self, rows: slice) -> torch.Tensor:
        return self._file.read(self._name, rows.start or 0, rows.stop)


class _FileWeight:
    """Stands where a Linear or RMSNorm of the model would be: `.weight` is read from the file each
    time it is asked for (and belongs to whoever asked); for a vocabulary matrix it is a _FileRows."""

    def __init__(self, file: TensorFile, name: str, eps: float | None = None, by_rows: bool = False,
                 bias: bool = False):
        self._file, self._name, self.eps, self._by_rows, self._bias = file, name, eps, by_rows, bias

    @property
    def weight(self) -> torch.Tensor | _FileRows:
        _give_back_freed_memory()  # the last tensor's float32 temporaries
        return _FileRows(self._file, self._name) if self._by_rows else self._file.read(self._name)

    @property
    def bias(self) -> torch.Tensor | None:
        return self._file.read(self._name.removesuffix("weight") + "bias") if self._bias else None


def _give_back_freed_memory() -> None:
    """Return the C heap's free memory to the OS (glibc's malloc_trim; elsewhere nothing). Converting
    tensor after tensor frees megabytes of temporaries each time, which glibc keeps for reuse, in
    pieces too scattered to reuse well: on SmolLM2-135M int4 the process held 560 MB after loading,
    of which 180 MB was such free memory."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


_M_MMAP_THRESHOLD = -3  # mallopt's parameter number in glibc's malloc.h
LARGE_ALLOCATION = 1 << 20


def _large_allocations_mapped() -> None:
    """Have glibc map every allocation of 1 MB or more on its own and unmap it when freed. By default
    the threshold rises to 32 MB after the first large free, so a prefill's 10-20 MB activations come
    from the heap, and the heap keeps what they leave: on Qwen2.5-0.5B int4 a 512-token prefill added
    126 MB of resident memory that later steps never used (with this, 13 MB). The engine's decode
    steps allocate less than 1 MB at a time, so they do not pay for the mapping."""
    try:
        ctypes.CDLL(None).mallopt(_M_MMAP_THRESHOLD, LARGE_ALLOCATION)
    except (OSError, AttributeError):
        pass


def lazy_model(file: TensorFile) -> SimpleNamespace:
    """What the engine's FastTransformer reads of a Transformer (config, layers' weights and norms),
    each weight read from the file when asked for. The engine converts (fuses, quantises) one tensor
    after another, so the whole float32 model never exists: a 4-bit file becomes a 4-bit engine
    without the 4x larger float32 copy in between."""
    _large_allocations_mapped()
    cfg = file.config
    b = cfg.qkv_bias

    def w(name: str, eps: float | None = None, bias: bool = False) -> _FileWeight:
        return _FileWeight(file, name, eps, bias=bias)

    def layer(i: int) -> SimpleNamespace:
        p = f"layers.{i}."
        return SimpleNamespace(
            attn=SimpleNamespace(wq=w(p + "attn.wq.weight", bias=b), wk=w(p + "attn.wk.weight", bias=b),
                                 wv=w(p + "attn.wv.weight", bias=b), wo=w(p + "attn.wo.weight")),
            ffn=SimpleNamespace(w_gate=w(p + "ffn.w_gate.weight"), w_up=w(p + "ffn.w_up.weight"),
                                w_down=w(p + "ffn.w_down.weight")),
            attn_norm=w(p + "attn_norm.weight", cfg.norm_eps), ffn_norm=w(p + "ffn_norm.weight", cfg.norm_eps))

    emb = _FileWeight(file, "tok_embeddings.weight", by_rows=True)
    out = emb if cfg.tie_embeddings else _FileWeight(file, "output.weight", by_rows=True)
    model = SimpleNamespace(config=cfg, layers=[layer(i) for i in range(cfg.n_layers)], norm=w("norm.weight"),
                            tok_embeddings=emb, output=out)
    model.eval = lambda: model
    return model
