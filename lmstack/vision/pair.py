"""A VLM as a pair of parameters files: model.gguf (the language model, today's export) and
mmproj.gguf (the encoder and projector, llama.cpp's convention), written and read back exactly."""

from __future__ import annotations

from pathlib import Path

from lmstack.errors import LmstackError
from lmstack.io.gguf_file import export_gguf, read_gguf, tokenizer_from_gguf
from lmstack.io.tokenizer import Tokenizer
from lmstack.model import Transformer
from lmstack.vision.mmproj import export_mmproj, read_mmproj
from lmstack.vision.train import load_vlm
from lmstack.vision.vlm import IMAGE_PAD, VLM, VLMConfig


def export_pair(run_dir: str | Path, out_dir: str | Path | None = None, dtype: str = "f32") -> tuple[Path, Path]:
    """model.gguf + mmproj.gguf of a trained vision run, into its directory (or out_dir)."""
    run_dir = Path(run_dir)
    vlm, tok, info = load_vlm(run_dir)
    out = Path(out_dir) if out_dir else run_dir
    out.mkdir(parents=True, exist_ok=True)
    name = f"lmstack-{run_dir.resolve().name}"
    model = export_gguf(vlm.lm, tok, out / "model.gguf", dtype, name=name, chat_template=info.get("chat_template"))
    return model, export_mmproj(vlm, out / "mmproj.gguf", name=name)


def load_pair(model_path: str | Path, mmproj_path: str | Path) -> tuple[VLM, Tokenizer]:
    """The VLM (eval mode) and tokenizer of an exported pair."""
    g = read_gguf(model_path)
    tok = tokenizer_from_gguf(g.metadata)
    vcfg, lm_dim, vision_sd = read_mmproj(mmproj_path)
    if lm_dim != g.config.dim:
        raise LmstackError(f"{mmproj_path} projects to width {lm_dim} but {model_path} is {g.config.dim} wide: "
                           "not a pair")
    lm = Transformer(g.config)
    lm.load_state_dict(g.state_dict, strict=False)
    vlm = VLM(VLMConfig(vcfg, g.config, tok.special(IMAGE_PAD)), lm)
    vlm.load_state_dict(vision_sd, strict=False)
    return vlm.eval(), tok
