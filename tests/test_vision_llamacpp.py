"""llama.cpp (the xllamacpp wheel) runs an exported VLM pair like lmstack: the same prompt length, the
same first-token log-probabilities (to 2e-3) and the same greedy answers to held-out image questions.

The model is random (training one here would dominate the suite's time), so some greedy steps are
near ties that any float difference flips; agreement is asserted on the answers whose every step has
a clear winner (top-2 margin above 0.02 nats, twenty times the numeric difference measured). The
trained default model's agreement is measured by bench/vision_llamacpp.py."""

import pytest
import torch

from lmstack.io.gguf_file import export_gguf
from lmstack.model import preset
from lmstack.vision.ask import image_inputs, prompt_ids
from lmstack.vision.data import build_data
from lmstack.vision.encoder import VisionConfig
from lmstack.vision.llamacpp import LlamaCppVision, png_data_url
from lmstack.vision.mmproj import export_mmproj
from lmstack.vision.train import default_tokenizer
from lmstack.vision.vlm import IMAGE_PAD, VLM, VLMConfig

pytestmark = pytest.mark.slow
MARGIN = 0.02


@torch.no_grad()
def greedy_with_margins(vlm, tok, img, q, n):
    """Our greedy ids, the smallest top-2 log-probability margin along them, the first step's log-probs."""
    ids = torch.tensor([prompt_ids(tok, vlm, q, [(1, 1)])])
    emb = vlm.embed(ids, image_inputs(vlm, img)[0][None])
    out, margin, first = [], float("inf"), None
    for _ in range(n):
        lp = vlm.lm(ids[:, :1].expand(-1, emb.shape[1]), embeds=emb)[0, -1].log_softmax(-1)
        first = lp if first is None else first
        top = lp.topk(2)
        margin = min(margin, float(top.values[0] - top.values[1]))
        t = int(top.indices[0])
        if t in tok.stop_ids:
            break
        out.append(t)
        emb = torch.cat([emb, vlm.lm.tok_embeddings(torch.tensor([[t]]))], dim=1)
    return out, margin, first


def whole(tok, ids: list[int]) -> list[int]:
    """The ids whose bytes are whole UTF-8 text: llama.cpp's server leaves a token that ends inside a
    character out of its per-token log-probabilities (it holds the bytes back until the character ends)."""
    return [t for t in ids if "\ufffd" not in tok.decode([t])]


def test_llama_cpp_answers_like_lmstack(tmp_path):
    data = build_data(24, seed=0, n_train=30, n_val=8)
    tok = default_tokenizer(data, 300)
    torch.manual_seed(1)
    vc = VisionConfig(image_size=24, patch_size=6, dim=32, n_layers=2, n_heads=2, ffn_dim=64, scale_factor=2)
    vlm = VLM(VLMConfig(vc, preset("nano", vocab_size=tok.vocab_size), tok.special(IMAGE_PAD))).eval()
    with torch.no_grad():  # spread-out weights: answers that vary with the image, not one fixed string
        for name, p in vlm.named_parameters():
            if p.dim() == 2 and name != "encoder.position_embd":
                p.normal_(0, 0.9 / p.shape[1] ** 0.5)
    export_gguf(vlm.lm, tok, tmp_path / "model.gguf")
    export_mmproj(vlm, tmp_path / "mmproj.gguf")
    cpp = LlamaCppVision(tmp_path / "model.gguf", tmp_path / "mmproj.gguf", n_ctx=128, threads=1)
    items = [(s.image, q) for s in data.val for _, q, _ in s.qa][:30]
    clear = agree = 0
    answers = set()
    for img, q in items:
        mine, margin, first = greedy_with_margins(vlm, tok, img, q, 6)
        content = [{"type": "image_url", "image_url": {"url": png_data_url(img)}}, {"type": "text", "text": "\n" + q}]
        r = cpp.server.handle_chat_completions({"messages": [{"role": "user", "content": content}], "max_tokens": 6,
                                                "temperature": 0, "cache_prompt": False, "logprobs": True,
                                                "top_logprobs": 5})
        steps = r["choices"][0]["logprobs"]["content"]
        assert r["usage"]["prompt_tokens"] == len(prompt_ids(tok, vlm, q, [(1, 1)]))  # same layout and text
        for t in steps[0]["top_logprobs"]:
            assert abs(t["logprob"] - float(first[t["id"]])) < 2e-3
        theirs = [s["id"] for s in steps if s["id"] not in tok.stop_ids]
        answers.add(tuple(mine))
        if margin > MARGIN:
            clear += 1
            agree += whole(tok, theirs) == whole(tok, mine)
    assert len(answers) > 3  # the answers depend on the image and the question
    assert clear >= 10, clear
    assert agree >= 0.95 * clear, (agree, clear)
