"""llama.cpp as the reference runtime of an exported pair: its server (the `xllamacpp` wheel, in
process) with `--mmproj`, asked through its OpenAI chat API with the image as a data URL, the way
any client would ask it. Used by the parity test and bench/vision_llamacpp.py."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np

from lmstack.errors import LmstackError


def png_data_url(img: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


class LlamaCppVision:
    """One llama.cpp server holding model.gguf + mmproj.gguf."""

    def __init__(self, model: str | Path, mmproj: str | Path, n_ctx: int = 256, threads: int = 2):
        try:
            import xllamacpp
        except ImportError:
            raise LmstackError("llama.cpp's Python wheel is not installed: pip install xllamacpp") from None
        p = xllamacpp.CommonParams()
        p.model.path, p.mmproj.path = str(model), str(mmproj)
        p.n_ctx, p.n_parallel = n_ctx, 1
        p.cpuparams.n_threads = p.cpuparams_batch.n_threads = threads
        # float32 throughout: llama.cpp's defaults (a float16 KV cache, flash attention on the CPU) move
        # log-probabilities by ~1e-3, enough to flip the near ties of an untrained model
        p.cache_type_k = p.cache_type_v = xllamacpp.ggml_type.GGML_TYPE_F32
        p.flash_attn_type = xllamacpp.llama_flash_attn_type.LLAMA_FLASH_ATTN_TYPE_DISABLED
        p.verbosity = 1  # errors only
        p.warmup = False
        self.server = xllamacpp.Server(p)

    def ask(self, img: np.ndarray, question: str, max_new: int = 16) -> tuple[str, list[int], int]:
        """(greedy answer, its token ids, prompt tokens llama.cpp counted). The image part comes first
        and the text part starts with a newline: the text lmstack's prompts put after the media marker."""
        content = [{"type": "image_url", "image_url": {"url": png_data_url(img)}},
                   {"type": "text", "text": "\n" + question}]
        r = self.server.handle_chat_completions({"messages": [{"role": "user", "content": content}],
                                                 "max_tokens": max_new, "temperature": 0, "cache_prompt": False,
                                                 "logprobs": True})
        if "error" in r:
            raise LmstackError(f"llama.cpp: {r['error'].get('message', r['error'])}")
        choice = r["choices"][0]
        ids = [t["id"] for t in (choice.get("logprobs") or {}).get("content") or []]
        return choice["message"]["content"].strip(), ids, int(r["usage"]["prompt_tokens"])

