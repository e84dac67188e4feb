"""Images through the OpenAI API: image_url content parts (data URLs in PNG, JPEG and other formats,
local files), streamed and not, batched with text requests, and every bad image a one-line 400."""

import base64
import os
import tempfile
import threading
from pathlib import Path

import numpy as np
import openai
import pytest
import torch

from lmstack.engine import Engine, SamplingParams
from lmstack.errors import LmstackError
from lmstack.io.conversations import encode_chat
from lmstack.serve import create_app
from lmstack.serve.app import ModelEntry
from lmstack.serve.images import read_image
from lmstack.serve.limits import Limits
from lmstack.serve.protocol import ApiError
from lmstack.vision.ask import ask, prompt_ids
from lmstack.vision.rows import chat
from lmstack.vision.serving import open_vision
from tests.serve_fixtures import running_server, tiny_run
from tests.vision_fixtures import png_bytes, tiny_vlm_run

Q = "What shape is this?"


@pytest.fixture(scope="module")
def vserver(tmp_path_factory, tokenizer):
    run, data = tiny_vlm_run(tmp_path_factory.mktemp("vlm"))
    vision = open_vision(run, max_batch=8, max_image_bytes=200_000, max_image_pixels=512 * 512)
    text = Engine.load(str(tiny_run(tmp_path_factory.mktemp("text"), tokenizer)), max_batch=4)
    entries = [ModelEntry("vlm", vision.engine, str(run), vision=vision), ModelEntry("text", text)]
    images = Limits(image_dir=str(tmp_path_factory.getbasetemp()))  # where the tests' own files are
    with running_server(create_app(entries, limits=images)) as url:
        yield url, vision, data
    vision.close()
    text.close()


@pytest.fixture
def client(vserver):
    return openai.OpenAI(base_url=vserver[0] + "/v1", api_key="none", max_retries=0, timeout=60)


def data_url(raw: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(raw).decode()


def ask_image(client, url: str, question: str = Q, model: str = "vlm", **kw):
    content = [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": question}]
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": content}],
                                          max_tokens=kw.pop("max_tokens", 6), temperature=0, **kw)


def marker_prompt(vision) -> list[int]:
    """The chat prompt of Q with one media marker, before the image layout is expanded."""
    return encode_chat(vision.tokenizer, chat(Q), add_generation_prompt=True, with_mask=False)[0]


def test_image_answers_equal_the_reference(vserver, client, tmp_path):
    _, vision, data = vserver
    vlm, tok = vision.vlm, vision.tokenizer
    answers = set()
    for s in data.val[:4]:
        want = ask(vlm, tok, [s.image], [Q], 6, reference=True)[0]  # the model itself, without the engine
        r = ask_image(client, data_url(png_bytes(s.image)))
        assert r.choices[0].message.content.strip() == want
        assert r.usage.prompt_tokens == len(prompt_ids(tok, vlm, Q, [(1, 1)]))  # the image layout counted
        answers.add(want)
    assert len(answers) > 1  # the answer depends on the image
    img = data.val[0].image
    want = ask(vlm, tok, [img], [Q], 6, reference=True)[0]
    path = tmp_path / "x.ppm"
    path.write_bytes(png_bytes(img, "PPM"))
    for url in (data_url(png_bytes(img, "BMP"), "image/bmp"), f"file://{path}", str(path)):
        assert ask_image(client, url).choices[0].message.content.strip() == want
    # local files only from inside --image-dir, links resolved first; none at all without one
    outside = Path(tempfile.mkdtemp()) / "outside.ppm"  # not under the server's folder
    outside.write_bytes(png_bytes(img, "PPM"))
    (tmp_path / "link.ppm").symlink_to(outside)
    climb = str(tmp_path / os.path.relpath(outside, tmp_path))  # .. up and out
    for url in (str(outside), f"file://{outside}", str(tmp_path / "link.ppm"), climb):
        with pytest.raises(openai.BadRequestError, match="only from the server's --image-dir"):
            ask_image(client, url)
    with pytest.raises(ApiError, match="reads no local files"):
        read_image(str(path), "messages.0.content.0.image_url.url", vision)
    with pytest.raises(LmstackError, match="not a folder"):
        Limits(image_dir=str(path)).check()
    jpeg = png_bytes(img, "JPEG")  # lossy: the reference is the decoded JPEG
    assert ask_image(client, data_url(jpeg, "image/jpeg")).choices[0].message.content.strip() == \
        ask(vlm, tok, [vision.load_image(jpeg)], [Q], 6, reference=True)[0]


def test_streaming_and_text_only_requests(vserver, client):
    _, vision, data = vserver
    url = data_url(png_bytes(data.val[1].image))
    whole = ask_image(client, url).choices[0].message.content
    chunks = list(ask_image(client, url, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == whole
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    # without an image, the same model answers the question alone, as the reference does
    r = client.chat.completions.create(model="vlm", messages=[{"role": "user", "content": Q}], max_tokens=6,
                                       temperature=0)
    assert r.choices[0].message.content.strip() == ask(vision.vlm, vision.tokenizer, [None], [Q], 6, reference=True)[0]
    assert {m.id: m.model_extra["vision"] for m in client.models.list().data} == {"vlm": True, "text": False}


def test_image_requests_batch_with_text_requests(vserver):
    _, vision, data = vserver
    eng, tok = vision.engine, vision.tokenizer
    steps: list[int] = []
    eng.on_step = lambda ids: steps.append(len(ids))
    try:
        params = SamplingParams(max_new_tokens=24, temperature=0, stop_token_ids=[])
        text = eng.submit(tok.encode("a circle"), params)
        ids, embeds = vision.prompt(marker_prompt(vision), [data.val[2].image])
        image = eng.submit(ids, params, embeds=embeds)
        text.result(), image.result()
    finally:
        eng.on_step = None
    assert max(steps) == 2  # decode steps advanced the text and the image request together


def test_engine_prefill_takes_input_embeddings(vserver):
    """The engine's prefill with embeddings gives the model's own logits for the same inputs."""
    from lmstack.engine.forward import FastTransformer

    _, vision, data = vserver
    vlm = vision.vlm
    ids, embeds = vision.prompt(marker_prompt(vision), [data.val[3].image])
    pos, feats = embeds()
    x = torch.tensor([ids])
    fast = FastTransformer(vlm.lm, max_batch=1)
    with torch.inference_mode():
        want = vlm.lm(x, embeds=vlm.embed(x, feats[None]))[0, -1]
        got = fast.prefill(torch.tensor(ids), 0, embeds=(pos, feats))
        plain = fast.prefill(torch.tensor(ids), 0)
    assert torch.allclose(got, want, atol=1e-4)
    assert not torch.allclose(plain, want, atol=1e-2)  # the features, not the pad tokens, were seen


def bad_request(client, url=None, messages=None, model="vlm") -> str:
    """The one-line message of the 400 a request gets."""
    with pytest.raises(openai.BadRequestError) as e:
        if messages is not None:
            client.chat.completions.create(model=model, messages=messages, max_tokens=4)
        else:
            ask_image(client, url, model=model)
    assert e.value.status_code == 400
    msg = e.value.body["message"]
    assert "\n" not in msg and "Traceback" not in msg
    return msg


def test_bad_images_are_400s(vserver, client, tmp_path):
    _, vision, data = vserver
    good = png_bytes(data.val[0].image)
    noise = np.random.default_rng(0).integers(0, 256, (300, 300, 3), dtype=np.uint8)
    image = {"type": "image_url", "image_url": {"url": data_url(good)}}
    assert "not an image" in bad_request(client, data_url(b"hello, this is text"))
    assert "corrupt or truncated" in bad_request(client, data_url(good[: len(good) // 2]))
    assert "bytes" in bad_request(client, data_url(png_bytes(noise)))  # over this model's 200,000 bytes
    assert "pixels" in bad_request(client, data_url(png_bytes(np.zeros((600, 600, 3), np.uint8))))  # small file
    assert "not fetched" in bad_request(client, "https://example.com/cat.png")
    assert "base64" in bad_request(client, "data:image/png;base64,@@@")
    assert "does not exist" in bad_request(client, str(tmp_path / "missing.png"))
    assert "text-only" in bad_request(client, data_url(good), model="text")
    ctx, least = vision.engine.max_seq_len, vision.min_image_tokens
    for n in (ctx // least + 1, ctx // (least + 6) + 1):  # refused before decoding; after the layout (6 markers)
        many = [image] * n + [{"type": "text", "text": Q}]
        assert "send fewer images" in bad_request(client, messages=[{"role": "user", "content": many}])
    assert "user messages only" in bad_request(client, messages=[
        {"role": "user", "content": Q}, {"role": "assistant", "content": [image]}])
    assert "marks where an image goes" in bad_request(client, messages=[{"role": "user", "content": [
        image, {"type": "text", "text": "<__media__>"}]}])
    assert "content part" in bad_request(client, messages=[{"role": "user", "content": [
        image, {"type": "image_url", "image_url": "not an object"}]}])
    # the server keeps serving after all of them
    assert ask_image(client, data_url(good)).choices[0].finish_reason in ("stop", "length")


def test_concurrent_image_requests(vserver, client):
    _, vision, data = vserver
    imgs = [s.image for s in data.val[:4]]
    want = ask(vision.vlm, vision.tokenizer, imgs, [Q] * 4, 6, reference=True)
    got = [None] * 4

    def one(i):
        got[i] = ask_image(client, data_url(png_bytes(imgs[i]))).choices[0].message.content.strip()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == want


def test_chat_image_command(vserver, tmp_path):
    """/image PATH in the interactive chat: the next message's answer is the reference's; bad images
    and text-only models are one-line errors, and the session goes on."""
    import io

    from lmstack.chat_cli import chat

    _, vision, data = vserver
    img = data.val[1].image
    good, bad = tmp_path / "good.png", tmp_path / "bad.png"
    good.write_bytes(png_bytes(img))
    bad.write_bytes(png_bytes(img)[:70])
    out = io.StringIO()
    params = SamplingParams(max_new_tokens=6, temperature=0)
    typed = [f"/image {bad}", f"/image {tmp_path / 'none.png'}", f"/image {good}", Q, "<__media__> hi", "/image"]
    history = chat(vision.engine, params, read=scripted(typed), out=out, vision=vision)
    text = out.getvalue()
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(errors) == 4 and "corrupt or truncated" in errors[0] and "does not exist" in errors[1]
    assert "marks where an image goes" in errors[2] and "needs a path" in errors[3]
    assert "image attached" in text
    assert history[0]["content"] == f"<__media__>\n{Q}"
    assert history[1]["content"].strip() == ask(vision.vlm, vision.tokenizer, [img], [Q], 6, reference=True)[0]
    out = io.StringIO()
    chat(vision.engine, params, read=scripted([f"/image {good}"]), out=out)  # without vision: a text-only model
    assert "error: this model is text-only" in out.getvalue()


def scripted(lines: list[str]):
    """A read() for chat that types the lines, then Ctrl-D."""
    it = iter(lines)

    def read(_prompt: str) -> str:
        try:
            return next(it)
        except StopIteration:
            raise EOFError from None

    return read


def test_a_repeated_image_is_encoded_once(vserver, monkeypatch):
    """A conversation resends its images every turn: their features come from the cache."""
    _, vision, data = vserver
    calls = []
    encode = vision.vlm.image_features
    monkeypatch.setattr(vision.vlm, "image_features", lambda views: calls.append(len(views)) or encode(views))
    img = 255 - data.val[5].image  # an image no other test has sent
    params = SamplingParams(max_new_tokens=6, temperature=0)
    got = []
    for _ in range(2):
        ids, embeds = vision.prompt(marker_prompt(vision), [img])
        got.append(vision.engine.submit(ids, params, embeds=embeds).result().text.strip())
    assert calls == [2]  # one tile and the global view, once
    assert got == [ask(vision.vlm, vision.tokenizer, [img], [Q], 6, reference=True)[0]] * 2
