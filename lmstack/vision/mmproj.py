"""The vision half of a VLM as llama.cpp's companion GGUF file ("mmproj"), and back.

`general.architecture = clip`, `clip.projector_type = idefics3` (pixel shuffle, then one linear
layer `mm.model.fc`), the encoder's hyperparameters as `clip.vision.*` keys and its weights as
`v.*` tensors, named as llama.cpp's clip loader reads them. The language model is exported as
today's model.gguf; the pair is what `llama-mtmd-cli -m model.gguf --mmproj mmproj.gguf` and
llama.cpp's server run. Weights are written as float32, so reading the pair back gives the exact
model.
"""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import torch

from lmstack.errors import LmstackError
from lmstack.io.files import atomic_path
from lmstack.vision.encoder import VisionConfig

PROJECTOR = "idefics3"
_K = gguf.Keys.ClipVision


def gguf_name(name: str) -> str:
    """Our state-dict name (of the VLM's encoder or projector) -> llama.cpp's tensor name."""
    if name == "projector.fc.weight":
        return "mm.model.fc.weight"
    if not name.startswith("encoder."):
        raise LmstackError(f"{name} is not part of the vision encoder")
    rest = name[len("encoder."):]
    if rest.startswith("blocks."):
        _, i, tail = rest.split(".", 2)
        return f"v.blk.{i}.{tail}"
    return "v.position_embd.weight" if rest == "position_embd" else f"v.{rest}"


def vision_state(vlm) -> dict[str, torch.Tensor]:
    return {k: v for k, v in vlm.state_dict().items() if k.startswith(("encoder.", "projector."))}


def export_mmproj(vlm, path: str | Path, name: str = "lmstack") -> Path:
    cfg: VisionConfig = vlm.config.vision
    path = Path(path)
    with atomic_path(path) as tmp:
        w = gguf.GGUFWriter(str(tmp), "clip")
        w.add_name(f"{name} vision")
        w.add_file_type(gguf.LlamaFileType.ALL_F32)
        w.add_clip_has_vision_encoder(True)
        w.add_clip_projector_type(PROJECTOR)
        w.add_vision_image_size(cfg.image_size)
        w.add_vision_patch_size(cfg.patch_size)
        w.add_vision_embedding_length(cfg.dim)
        w.add_vision_feed_forward_length(cfg.ffn_dim)
        w.add_vision_block_count(cfg.n_layers)
        w.add_vision_head_count(cfg.n_heads)
        w.add_vision_attention_layernorm_eps(cfg.norm_eps)
        w.add_vision_projection_dim(vlm.config.lm.dim)
        w.add_vision_image_mean(list(cfg.image_mean))
        w.add_vision_image_std(list(cfg.image_std))
        w.add_vision_projector_scale_factor(cfg.scale_factor)
        w.add_vision_use_gelu(cfg.act == "gelu")
        w.add_vision_use_silu(cfg.act == "silu")
        w.add_vision_preproc_image_size(cfg.image_size * cfg.max_tiles)  # the longest edge before tiling
        for k, t in vision_state(vlm).items():
            w.add_tensor(gguf_name(k), t.detach().float().cpu().numpy())
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
    return path


def _value(field: gguf.ReaderField):
    parts = [field.parts[i] for i in field.data]
    if field.types and field.types[0] == gguf.GGUFValueType.STRING:
        return bytes(parts[0]).decode("utf-8")
    vals = [p.tolist()[0] for p in parts]
    return vals if field.types[0] == gguf.GGUFValueType.ARRAY else vals[0]


def _f32(v: float) -> float:
    """The shortest decimal of a float32 value: 1e-06 reads back as 1e-06, not 9.99999997e-07."""
    return float(str(np.float32(v)))


def read_mmproj(path: str | Path) -> tuple[VisionConfig, int, dict[str, torch.Tensor]]:
    """(vision config, language-model width, state dict for the VLM's encoder and projector)."""
    path = Path(path)
    if not path.is_file():
        raise LmstackError(f"no mmproj file at {path}")
    try:
        reader = gguf.GGUFReader(str(path))
    except Exception as e:
        raise LmstackError(f"{path} is not a readable GGUF file ({type(e).__name__}: {e})") from None
    meta = {k: _value(f) for k, f in reader.fields.items() if not k.startswith("GGUF.")}
    if meta.get("general.architecture") != "clip" or meta.get(gguf.Keys.Clip.PROJECTOR_TYPE) != PROJECTOR:
        raise LmstackError(f"{path} is not an idefics3 mmproj file (architecture {meta.get('general.architecture')!r}, "
                           f"projector {meta.get(gguf.Keys.Clip.PROJECTOR_TYPE)!r})")
    try:
        cfg = VisionConfig(
            image_size=meta[_K.IMAGE_SIZE], patch_size=meta[_K.PATCH_SIZE], dim=meta[_K.EMBEDDING_LENGTH],
            n_layers=meta[_K.BLOCK_COUNT], n_heads=meta[_K.Attention.HEAD_COUNT], ffn_dim=meta[_K.FEED_FORWARD_LENGTH],
            norm_eps=_f32(meta[_K.Attention.LAYERNORM_EPS]),
            scale_factor=meta[_K.Projector.SCALE_FACTOR], image_mean=[_f32(v) for v in meta[_K.IMAGE_MEAN]],
            image_std=[_f32(v) for v in meta[_K.IMAGE_STD]],
            act="silu" if meta.get(_K.USE_SILU) else "gelu",
            max_tiles=max(1, meta.get(_K.PREPROC_IMAGE_SIZE, meta[_K.IMAGE_SIZE]) // meta[_K.IMAGE_SIZE]))
        lm_dim = int(meta[_K.PROJECTION_DIM])
    except KeyError as e:
        raise LmstackError(f"{path}: mmproj key {e.args[0]} is missing") from None
    from lmstack.model import ModelConfig
    from lmstack.vision.vlm import VLM, VLMConfig

    with torch.device("meta"):
        want = vision_state(VLM(VLMConfig(cfg, ModelConfig(dim=lm_dim, n_heads=1, n_kv_heads=1, n_layers=1), 0)))
    by_gguf = {gguf_name(k): (k, tuple(v.shape)) for k, v in want.items()}
    sd = {}
    for t in reader.tensors:
        if t.name not in by_gguf:
            raise LmstackError(f"{path}: unexpected tensor {t.name}")
        ours, shape = by_gguf[t.name]
        arr = np.asarray(gguf.quants.dequantize(t.data, t.tensor_type), dtype=np.float32).reshape(shape)
        sd[ours] = torch.from_numpy(arr.copy())
    missing = sorted(set(by_gguf) - {gguf_name(k) for k in sd})
    if missing:
        raise LmstackError(f"{path}: tensor {missing[0]} is missing")
    return cfg, lm_dim, sd
