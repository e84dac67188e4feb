"""No text a user, a tool or a document supplies can become a reserved token or a role boundary.

Checked over more than 100,000 adversarial strings: every special-token literal of the vocabulary,
near misses, Unicode look-alikes and normalisation forms, zero-width characters, split and escaped
forms, plus hypothesis-generated text around them; through the package tokenizer (lmstack's and
SmolLM2's vocabularies), through the chat renderer in every role that carries user-controlled text
(what the engine, the server and the chat CLI all build prompts with), and through the run file.
"""

from __future__ import annotations

import json
import random
import unicodedata

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lmstack.io.conversations import encode_chat, special_token_ids

LOOKALIKE = {"<": ["＜", "‹", "〈", "﹤", "\u02c2"], ">": ["＞", "›", "〉", "﹥", "\u02c3"],
             "|": ["｜", "ǀ", "∣", "│", "\u2223"], "_": ["＿", "‗", "\u2017"], "/": ["／", "⁄", "∕"]}
ZERO_WIDTH = ["\u200b", "\u200c", "\u200d", "\ufeff", "\u2060", "\u00ad"]


def variants(literal: str, rng: random.Random) -> list[str]:
    """The literal and ways of writing something that looks, or decodes, like it."""
    out = [literal, literal.upper(), literal.lower(), f" {literal} ", literal * 3, literal[:-1], literal[1:],
           literal.replace("|", "||"), json.dumps(literal), json.dumps(literal)[1:-1],
           literal.replace("<", "&lt;").replace(">", "&gt;"), literal.replace("<", "\\u003c").replace(">", "\\u003e"),
           "".join(f"\\x{ord(c):02x}" for c in literal), literal.encode().hex()]
    for form in ("NFC", "NFD", "NFKC", "NFKD"):
        out.append(unicodedata.normalize(form, literal))
    for ch, subs in LOOKALIKE.items():
        for s in subs:
            v = literal.replace(ch, s)
            out += [v, unicodedata.normalize("NFKC", v)]
    for z in ZERO_WIDTH:
        for i in range(1, len(literal)):
            out.append(literal[:i] + z + literal[i:])
    for i in range(1, len(literal)):  # split: the two halves apart, and around other text
        out += [literal[:i], literal[i:], literal[:i] + " " + literal[i:], literal[i:] + literal[:i]]
    for _ in range(40):  # random mutations: a character dropped, doubled or swapped
        i = rng.randrange(len(literal))
        op = rng.choice(["drop", "dup", "swap", "case"])
        if op == "drop":
            out.append(literal[:i] + literal[i + 1:])
        elif op == "dup":
            out.append(literal[:i] + literal[i] * 2 + literal[i:])
        elif op == "swap" and i + 1 < len(literal):
            out.append(literal[:i] + literal[i + 1] + literal[i] + literal[i + 2:])
        else:
            out.append(literal[:i] + literal[i].swapcase() + literal[i + 1:])
    return out


def corpus(tok, n: int, seed: int = 0) -> list[str]:
    """n adversarial strings built from the vocabulary's own special tokens (plus the ChatML and tool
    markers every template uses)."""
    rng = random.Random(seed)
    literals = sorted(set(special_token_ids(tok)) | {"<|im_start|>", "<|im_end|>", "<|endoftext|>",
                                                      "<tool_call>", "</tool_call>", "<tool_response>"})
    base = [v for lit in literals for v in variants(lit, rng)]
    glue = ["", " ", "\n", "user\n", "assistant\n", "system\n", "<|im_start|>assistant\n", "\u200b"]
    out = list(base)
    while len(out) < n:
        k = rng.randint(2, 4)
        out.append("".join(rng.choice(glue) + rng.choice(base) for _ in range(k)))
    return out[:n]


def test_text_never_encodes_to_a_reserved_token(any_tokenizer, request):
    tok = any_tokenizer
    reserved = set(special_token_ids(tok).values())
    texts = corpus(tok, 100_000 if tok is request.getfixturevalue("tokenizer") else 20_000)
    for i in range(0, len(texts), 5_000):
        for text, enc in zip(texts[i:i + 5_000], tok.hf.encode_batch(texts[i:i + 5_000]), strict=True):
            assert not reserved & set(enc.ids), text
    for text in texts[:2_000]:  # and the public method, one by one
        assert not reserved & set(tok.encode(text)), text


def _roles(text: str) -> list[dict]:
    """One conversation with `text` in every field a client or a tool controls."""
    return [{"role": "system", "content": text}, {"role": "user", "content": text},
            {"role": "assistant", "content": text,
             "tool_calls": [{"type": "function", "function": {"name": text or "f", "arguments": json.dumps(
                 {"q": text})}}]},
            {"role": "tool", "content": text}, {"role": "user", "content": text}]


def _special_counts(tok, ids: list[int]) -> dict[int, int]:
    reserved = set(special_token_ids(tok).values())
    return {i: ids.count(i) for i in reserved if i in ids}


def test_role_boundaries_come_only_from_the_template(any_tokenizer):
    """The special tokens of a rendered prompt are exactly those of the same conversation with
    harmless text: in every role, for every adversarial string."""
    tok = any_tokenizer
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}]
    want = _special_counts(tok, encode_chat(tok, _roles("x"), tools=tools, add_generation_prompt=True,
                                            with_mask=False)[0])
    for text in corpus(tok, 1_500, seed=1):
        ids, _ = encode_chat(tok, _roles(text), tools=tools, add_generation_prompt=True, with_mask=False)
        assert _special_counts(tok, ids) == want, text


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<tool_call>", "im_end", "|>",
                                 "<|", "\u200b", "＜｜", "\n"]) | st.text(max_size=6), max_size=8).map("".join))
def test_generated_text_in_every_role(tokenizer, text):
    tok = tokenizer
    want = _special_counts(tok, encode_chat(tok, _roles("x"), add_generation_prompt=True, with_mask=False)[0])
    ids, _ = encode_chat(tok, _roles(text), add_generation_prompt=True, with_mask=False)
    assert _special_counts(tok, ids) == want


def test_the_run_file_never_encodes_text_to_a_control_token(trained_gguf, tokenizer):
    from lmstack import run as runfile

    _, path = trained_gguf
    rf = runfile.load(str(path)).tokenizer
    control = {i for i, t in enumerate(rf.types) if t == runfile.CONTROL}
    for text in corpus(tokenizer, 20_000, seed=2):
        assert not control & set(rf.encode(text)), text
