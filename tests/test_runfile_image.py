"""The run file's image input: PNG (every colour type, every row filter) and binary PPM decoded with
zlib and numpy to Pillow's pixels, resizing with Pillow's bicubic weights, the mmproj encoder in numpy
giving the package's features, and `run.py model.gguf --image x.png "question"` answering held-out
images exactly as lmstack does."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from lmstack import run
from lmstack.vision.ask import ask
from lmstack.vision.preprocess import image_views
from lmstack.vision.train import load_vlm
from tests.vision_fixtures import png_bytes, tiny_vlm_run

Q = "What shape is this?"


def pillow_rgb(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def test_png_and_ppm_decode_like_pillow():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:40, 0:56]
    smooth = np.stack([xx * 4 % 256, yy * 6 % 256, (xx + 2 * yy) % 256], -1).astype(np.uint8)
    images = [Image.fromarray(smooth), Image.fromarray(rng.integers(0, 256, (21, 34, 3), dtype=np.uint8)),
              Image.fromarray(rng.integers(0, 256, (19, 23, 4), dtype=np.uint8), "RGBA"),
              Image.fromarray(rng.integers(0, 256, (17, 9), dtype=np.uint8), "L"),
              Image.fromarray(rng.integers(0, 256, (12, 13, 2), dtype=np.uint8), "LA"),
              Image.fromarray(smooth).convert("P", palette=Image.Palette.ADAPTIVE)]
    for im in images:
        for options in ({}, {"optimize": True}, {"compress_level": 0}):  # Pillow picks row filters adaptively
            buf = io.BytesIO()
            im.save(buf, "PNG", **options)
            assert np.array_equal(run.decode_png(buf.getvalue()), pillow_rgb(buf.getvalue())), (im.mode, options)
    ppm = png_bytes(smooth, "PPM")
    assert np.array_equal(run.decode_ppm(ppm), smooth)
    good = png_bytes(smooth)
    for bad, msg in ((good[:len(good) // 2], "corrupt or truncated"), (good[:40], "corrupt or truncated"),
                     (ppm[:100], "truncated"), (b"P3 2 2 255 0 0 0", "only binary P6")):
        with pytest.raises(ValueError, match=msg):
            (run.decode_ppm if bad[:1] == b"P" else run.decode_png)(bad)


def test_resize_uses_pillows_weights():
    rng = np.random.default_rng(1)
    for (h, w), (H, W) in (((7, 5), (48, 48)), ((37, 53), (48, 48)), ((48, 48), (24, 24)), ((300, 200), (48, 72)),
                           ((20, 50), (40, 40)), ((33, 47), (33, 20))):
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        want = np.asarray(Image.fromarray(img).resize((W, H), Image.Resampling.BICUBIC))
        assert np.array_equal(run.resize(img, W, H), want), ((h, w), (H, W))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from lmstack.vision.pair import export_pair

    d, data = tiny_vlm_run(tmp_path_factory.mktemp("vlm"))
    model, mmproj = export_pair(d)
    vlm, tok, _ = load_vlm(d)
    return model, mmproj, vlm, tok, data


def test_numpy_encoder_gives_the_packages_features(exported):
    _, mmproj, vlm, _, data = exported
    vision = run.Vision(str(mmproj))
    img = data.val[0].image
    views, rows, cols = vision.views(img)
    ref, r2, c2 = image_views(img, vlm.config.vision)
    assert (rows, cols) == (r2, c2) and len(views) == len(ref)
    with torch.no_grad():
        want = vlm.image_features(ref).numpy()
    got = np.stack([vision.encode(v) for v in views])
    assert got.shape == want.shape and np.allclose(got, want, atol=1e-4)


def test_serve_finds_the_exported_pair(exported):
    """lmstack serve --model .../model.gguf: mmproj.gguf beside it makes it a vision model."""
    from lmstack.engine import SamplingParams
    from lmstack.io.conversations import encode_chat
    from lmstack.serve.server import load_entries
    from lmstack.vision.rows import chat

    model, _, vlm, tok, data = exported
    (entry,) = load_entries([str(model)], max_batch=2)
    try:
        assert entry.name == "model" and entry.vision is not None
        ids, _ = encode_chat(tok, chat(Q), add_generation_prompt=True, with_mask=False)
        ids, embeds = entry.vision.prompt(ids, [data.val[2].image])
        got = entry.engine.submit(ids, SamplingParams(max_new_tokens=6, temperature=0), embeds=embeds).result()
        assert got.text.strip() == ask(vlm, tok, [data.val[2].image], [Q], 6, reference=True)[0]
    finally:
        entry.engine.close()


def test_run_file_answers_held_out_images_as_lmstack_does(exported, tmp_path, capsys):
    model, mmproj, vlm, tok, data = exported
    images = [s.image for s in data.val[:5]]
    # first, as numpy's BLAS threads, still spinning after the run file, would slow PyTorch's down
    wants = ask(vlm, tok, images, [Q] * len(images), 6, reference=True)
    assert len(set(wants)) > 1  # the answers depend on the image
    for i, (img, want) in enumerate(zip(images, wants, strict=True)):
        path = tmp_path / f"{i}.png"
        path.write_bytes(png_bytes(img))
        assert run.main([str(model), Q, "--image", str(path), "--temperature", "0", "-n", "6"]) == 0
        assert capsys.readouterr().out.strip() == want
    ppm = tmp_path / "x.ppm"
    ppm.write_bytes(png_bytes(images[0], "PPM"))
    assert run.main([str(model), Q, "--image", str(ppm), "--mmproj", str(mmproj), "--temperature", "0", "-n", "6"]) == 0
    assert capsys.readouterr().out.strip() == wants[0]
    (tmp_path / "bad.png").write_bytes(b"not an image at all")
    assert run.main([str(model), Q, "--image", str(tmp_path / "bad.png")]) == 1
    assert "not a PNG or binary PPM" in capsys.readouterr().err

