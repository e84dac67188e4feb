"""Asking a VLM about images: a prompt with the image layout, the image's features, a greedy reply.

`prompt_ids` renders the conversation through the chat template (`encode_chat`, the same as
training) with the user's text after the media marker, then expands the marker into the image's
layout; `image_inputs` gives the matching features. The evaluation asks through `ask`, which runs
the engine as the server and the chat do (vision/serving.py), so what is measured is what a user
gets; `ask(..., reference=True)` is the model's own forward pass, the reference for tests.
"""

from __future__ import annotations

import numpy as np
import torch

from lmstack.errors import LmstackError
from lmstack.io.conversations import encode_chat
from lmstack.io.tokenizer import Tokenizer
from lmstack.vision.preprocess import image_views
from lmstack.vision.rows import chat
from lmstack.vision.vlm import VLM, expand_images, greedy, image_layout


def prompt_ids(tok: Tokenizer, vlm: VLM, question: str, grids: list[tuple[int, int]],
               history: list[dict] | None = None) -> list[int]:
    """Token ids of the generation prompt; grids: (rows, cols) of each image, in order."""
    msgs = (history or []) + chat(question, image=bool(grids))
    ids, mask = encode_chat(tok, msgs, add_generation_prompt=True, with_mask=False)
    n = vlm.config.vision.tokens_per_view
    ids, _ = expand_images(tok, ids, [False] * len(ids), [image_layout(tok, r, c, n) for r, c in grids])
    return ids


def image_inputs(vlm: VLM, img: np.ndarray) -> tuple[torch.Tensor, tuple[int, int]]:
    """(features (views * tokens, dim), (rows, cols)) of one image."""
    views, rows, cols = image_views(img, vlm.config.vision)
    with torch.no_grad():
        return vlm.image_features(views).flatten(0, 1), (rows, cols)


def ask(vlm: VLM, tok: Tokenizer, images: list[np.ndarray | None], questions: list[str], max_new: int = 16,
        reference: bool = False) -> list[str]:
    """Greedy answers, one question per image (None: the question alone, no image); see ask_ids."""
    return [tok.decode(ids, skip_special=True).strip()
            for ids in ask_ids(vlm, tok, images, questions, max_new, reference)]


def ask_ids(vlm: VLM, tok: Tokenizer, images: list[np.ndarray | None], questions: list[str], max_new: int = 16,
            reference: bool = False) -> list[list[int]]:
    """The greedy answers' token ids (stop tokens left out): through the engine, all at once, as the
    server and the chat answer; with `reference`, through the model's own forward pass without a KV
    cache (vlm.greedy), the independent reference the engine's answers are checked against."""
    if len(images) != len(questions):
        raise LmstackError("one question per image")
    if reference:
        return _reference_ids(vlm, tok, images, questions, max_new)
    from lmstack.vision.serving import VisionModel

    vision = VisionModel(vlm, tok, max_batch=64)
    try:
        return [done.token_ids for done in _engine_answers(vision, images, questions, max_new)]
    finally:
        vision.close()


def _engine_answers(vision, images: list[np.ndarray | None], questions: list[str], max_new: int) -> list:
    """Each question (about its image, or alone) through the VisionModel's engine, all submitted before
    any is awaited so that they share decode batches; the finished requests."""
    from lmstack.engine import SamplingParams

    params, requests = SamplingParams(max_new_tokens=max_new, temperature=0), []
    for img, q in zip(images, questions, strict=True):
        ids, _ = encode_chat(vision.tokenizer, chat(q, image=img is not None), template=vision.engine.chat_template,
                             add_generation_prompt=True, with_mask=False)
        ids, embeds = vision.prompt(ids, [] if img is None else [img])
        requests.append(vision.engine.submit(ids, params, embeds=embeds))
    return [r.result() for r in requests]


def _reference_ids(vlm: VLM, tok: Tokenizer, images: list[np.ndarray | None], questions: list[str], max_new: int
                   ) -> list[list[int]]:
    answers: list[list[int]] = [[] for _ in questions]
    groups: dict[tuple, list[int]] = {}
    prepared, seen = [], {}
    for i, (img, q) in enumerate(zip(images, questions, strict=True)):
        if img is not None and (key := (img.shape, img.tobytes())) not in seen:  # an image asked twice: encoded once
            seen[key] = image_inputs(vlm, img)
        feats, grid = seen[key] if img is not None else (None, None)
        ids = prompt_ids(tok, vlm, q, [grid] if grid else [])
        prepared.append((ids, feats))
        groups.setdefault((tuple(ids), feats is None), []).append(i)
    for (ids, no_image), members in groups.items():
        for k in range(0, len(members), 64):
            part = members[k:k + 64]
            x = torch.tensor([list(ids)] * len(part))
            feats = None if no_image else torch.stack([prepared[i][1] for i in part])
            for i, out in zip(part, greedy(vlm, x, feats, max_new, tok.stop_ids), strict=True):
                answers[i] = out
    return answers


def answer_about(model: str, image_path: str, question: str, max_new: int = 64) -> str:
    """lmstack chat --image: one greedy answer about one image file (checked before the model loads),
    through the engine as the server and the interactive chat answer (vision/serving.py)."""
    from lmstack.vision.preprocess import load_image
    from lmstack.vision.serving import open_vision

    img = load_image(image_path, what="image")
    if not question.strip():
        raise LmstackError("the question is empty")
    vision = open_vision(model, max_batch=1)
    try:
        return _engine_answers(vision, [img], [question], max_new)[0].text.strip()
    finally:
        vision.close()
