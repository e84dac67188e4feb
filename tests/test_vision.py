"""Vision: encoder and projector shapes, pixel shuffle in llama.cpp's order, image input and its errors,
the image layout in token ids, training rows, and the mmproj pair written and read back exactly."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from lmstack.errors import LmstackError
from lmstack.model import preset
from lmstack.vision.data import build_data
from lmstack.vision.encoder import VisionConfig
from lmstack.vision.preprocess import image_views, load_image, tile_grid
from lmstack.vision.projector import pixel_shuffle
from lmstack.vision.vlm import IMAGE_PAD, VLM, VLMConfig, expand_images, image_layout, pack_pixels, split_packed

SMALL = dict(image_size=24, patch_size=6, dim=32, n_layers=1, n_heads=2, ffn_dim=48, scale_factor=2)


@pytest.fixture(scope="module")
def data():
    return build_data(24, seed=0, n_train=40, n_val=8)


@pytest.fixture(scope="module")
def vtok(data):
    from lmstack.vision.train import default_tokenizer

    return default_tokenizer(data, 300)


@pytest.fixture(scope="module")
def vlm(vtok):
    torch.manual_seed(0)
    vc = VisionConfig(**SMALL)
    return VLM(VLMConfig(vc, preset("nano", vocab_size=vtok.vocab_size), vtok.special(IMAGE_PAD))).eval()


def test_encoder_and_projector_shapes(vlm):
    cfg = vlm.config.vision
    x = torch.randn(3, 3, cfg.image_size, cfg.image_size)
    assert vlm.encoder(x).shape == (3, cfg.n_patches, cfg.dim)
    assert vlm.image_features(x).shape == (3, cfg.tokens_per_view, vlm.config.lm.dim)
    assert cfg.tokens_per_view == (cfg.grid // cfg.scale_factor) ** 2


def test_pixel_shuffle_order_is_llama_cpps():
    grid, s, C = 4, 2, 3
    x = torch.arange(grid * grid * C, dtype=torch.float32).view(1, grid * grid, C)
    y = pixel_shuffle(x, grid, s)
    for i in range(grid // s):
        for j in range(grid // s):  # token (i, j): patches (i*s+a, j*s+b), a then b, each patch's C contiguous
            want = torch.cat([x[0, (i * s + a) * grid + j * s + b] for a in range(s) for b in range(s)])
            assert torch.equal(y[0, i * (grid // s) + j], want)


def test_config_errors():
    with pytest.raises(LmstackError):
        VisionConfig(image_size=25, patch_size=6)
    with pytest.raises(LmstackError):
        VisionConfig(dim=64, ffn_dim=64)  # llama.cpp would read equal sizes as swapped weights
    with pytest.raises(LmstackError):
        VisionConfig(image_size=48, patch_size=6, scale_factor=3)


def test_tiles_above_the_encoder_size():
    cfg = VisionConfig(**{**SMALL, "max_tiles": 3})
    assert tile_grid(24, 24, cfg) == (1, 1)
    assert tile_grid(10, 10, cfg) == (1, 1)
    assert tile_grid(48, 30, cfg) == (2, 2)
    assert tile_grid(1000, 100, cfg) == (3, 1)  # the longest side is capped at max_tiles tiles
    views, rows, cols = image_views(np.zeros((48, 72, 3), np.uint8), cfg)
    assert (rows, cols) == (2, 3) and views.shape == (7, 3, 24, 24)  # 6 tiles and the global view
    # normalised with the config's mean and std: black is (0 - 0.5) / 0.5
    assert torch.allclose(views, torch.full_like(views, -1.0))


def png(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "PNG")
    return buf.getvalue()


def test_load_image_and_bad_input(tmp_path):
    img = np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    assert np.array_equal(load_image(png(img)), img)
    p = tmp_path / "x.png"
    p.write_bytes(png(img))
    assert load_image(p).shape == (20, 30, 3)
    cases = {
        b"this is not an image": "not an image",
        png(img)[:60]: "corrupt or truncated",
        b"": "empty",
    }
    for data, msg in cases.items():
        with pytest.raises(LmstackError, match=msg):
            load_image(data)
    with pytest.raises(LmstackError, match="pixels"):
        load_image(png(img), max_pixels=100)
    with pytest.raises(LmstackError, match="bytes"):
        load_image(png(img), max_bytes=50)
    with pytest.raises(LmstackError, match="does not exist"):
        load_image(tmp_path / "missing.png")


def test_image_layout_is_idefics3s(vtok):
    one = vtok.decode(image_layout(vtok, 1, 1, 2))
    pad = IMAGE_PAD
    around = "<fake_token_around_image>"
    assert one == f"{around}<row_1_col_1>{pad}{pad}\n\n{around}<global-img>{pad}{pad}{around}"
    two = vtok.decode(image_layout(vtok, 2, 2, 1))
    assert two.count(pad) == 5 and "<row_2_col_2>" in two and two.count("\n") == 3  # one row break + "\n\n"


def test_expand_images_counts_markers(vtok):
    from lmstack.io.conversations import encode_chat
    from lmstack.vision.rows import chat

    ids, mask = encode_chat(vtok, chat("What shape is this?", "circle"))
    lay = image_layout(vtok, 1, 1, 4)
    out, m = expand_images(vtok, ids, mask, [lay])
    assert len(out) == len(ids) - len(vtok.encode("<__media__>")) + len(lay)
    assert sum(m) == sum(mask)  # image positions are never trained
    with pytest.raises(LmstackError, match="places"):
        expand_images(vtok, ids, mask, [lay, lay])
    with pytest.raises(LmstackError, match="more images"):
        expand_images(vtok, ids, mask, [])


def test_rows_carry_their_pixels(vtok, vlm, data):
    from lmstack.vision.rows import ImageRows

    cfg = vlm.config.vision
    rows = ImageRows(vtok, cfg, data.train[:5], data.val[:2], 48, 4)
    x, y = rows.get(0)
    ids, pix = split_packed(x, cfg)
    assert ids.shape == y.shape and ids.shape[0] == 4 and ids.shape[1] <= 48
    assert (y[:, -1] != -1).any()  # trimmed to the batch's last target, no further
    images = {s.image.tobytes() for s in data.train[:5]}
    assert all(p.numpy().tobytes() in images for p in pix)
    assert ((ids == vtok.special(IMAGE_PAD)).sum(1) == 2 * cfg.tokens_per_view).all()
    assert torch.equal(split_packed(torch.from_numpy(pack_pixels(data.train[0].image, cfg))[None], cfg)[1][0],
                       torch.from_numpy(data.train[0].image))


def test_trimmed_batches_train_on_the_same_loss(vtok, vlm, data):
    """A batch without its shared padding columns gives the full rows' loss, and the columns that go
    hold nothing trained."""
    from lmstack.vision.rows import ImageRows, trim_padding

    rows = ImageRows(vtok, vlm.config.vision, data.train[:6], data.val[:2], 48, 6)
    full_x, full_y = rows.x[:6], rows.y[:6]
    x, y = trim_padding(full_x, full_y, 48)
    assert y.shape[1] < 48 and x.shape[1] == full_x.shape[1] - (48 - y.shape[1])
    assert (full_y[:, y.shape[1]:] == -1).all()
    with torch.no_grad():
        _, a = vlm(full_x, full_y, reduction="sum")
        _, b = vlm(x, y, reduction="sum")
    assert torch.allclose(a, b, rtol=1e-5)
    assert torch.equal(split_packed(x, vlm.config.vision)[1], split_packed(full_x, vlm.config.vision)[1])


def test_grouped_batches_visit_every_row_once_with_each_images_rows_together(vtok, vlm, data):
    """An epoch is a permutation of the rows in which each image's rows are consecutive, seeded; without
    grouping it is the plain shuffle of the rows."""
    from lmstack.vision.rows import ImageRows

    cfg = vlm.config.vision
    rows = ImageRows(vtok, cfg, data.train[:30], data.val[:2], 48, 5, seed=3, group_images=True)
    n = len(rows)
    sizes = np.bincount(rows.image_of)
    assert sizes.max() > 1  # a one-shape scene has four questions and a caption
    for epoch in (0, 1):
        order = rows._epoch_rows(epoch)[2]
        assert sorted(order.tolist()) == list(range(n))
        runs = np.split(rows.image_of[order], np.flatnonzero(np.diff(rows.image_of[order])) + 1)
        assert len(runs) == len(sizes) and all(len(r) == sizes[r[0]] for r in runs)
    assert not np.array_equal(rows._epoch_rows(0)[2], rows._epoch_rows(1)[2])
    again = ImageRows(vtok, cfg, data.train[:30], data.val[:2], 48, 5, seed=3, group_images=True)
    assert all(torch.equal(rows.get(s)[0], again.get(s)[0]) for s in range(2 * n // 5))
    plain = ImageRows(vtok, cfg, data.train[:30], data.val[:2], 48, 5, seed=3)
    assert np.array_equal(plain._epoch_rows(1)[2], np.random.default_rng([3, 1]).permutation(n))
    ids = lambda r, s: split_packed(r.get(s)[0], cfg)[1].reshape(5, -1)
    distinct = lambda r: np.mean([len(torch.unique(ids(r, s), dim=0)) for s in range(n // 5)])
    assert distinct(rows) < distinct(plain)  # fewer images a batch: fewer passes through the encoder


def test_rows_sharing_an_image_train_as_if_each_had_its_own(vtok, data):
    """VLM.forward encodes each distinct image of a batch once; the loss and every gradient are those
    of encoding it for each row."""
    from lmstack.vision.preprocess import normalise
    from lmstack.vision.rows import ImageRows

    torch.manual_seed(1)
    cfg = VisionConfig(**SMALL)
    model = VLM(VLMConfig(cfg, preset("nano", vocab_size=vtok.vocab_size), vtok.special(IMAGE_PAD)))
    rows = ImageRows(vtok, cfg, data.train[:12], data.val[:2], 48, 8)
    x, y = rows.x[:8], rows.y[:8]  # as built: each image's rows side by side
    assert len(torch.unique(split_packed(x, cfg)[1].reshape(8, -1), dim=0)) < 8
    _, loss = model(x, y)
    loss.backward()
    got = {k: p.grad.clone() for k, p in model.named_parameters()}
    model.zero_grad()
    ids, pix = split_packed(x, cfg)
    f = model.image_features(normalise(pix, cfg))  # once per row
    _, want = model.lm(ids, y, embeds=model.place(ids, torch.cat([f, f], dim=1)))
    want.backward()
    assert torch.allclose(loss, want, rtol=1e-6)
    for k, p in model.named_parameters():
        assert torch.allclose(got[k], p.grad, rtol=1e-4, atol=1e-7), k


def test_the_image_reaches_the_language_model(vtok, vlm, data):
    from lmstack.vision.ask import image_inputs, prompt_ids

    img = data.val[0].image
    ids = torch.tensor([prompt_ids(vtok, vlm, "What shape is this?", [(1, 1)])])
    feats, _ = image_inputs(vlm, img)
    with torch.no_grad():
        a = vlm.lm(ids, embeds=vlm.embed(ids, feats[None]))
        b = vlm.lm(ids, embeds=vlm.embed(ids, image_inputs(vlm, 255 - img)[0][None]))
    first_pad = int((ids[0] == vtok.special(IMAGE_PAD)).nonzero()[0])
    assert torch.equal(a[0, :first_pad], b[0, :first_pad])  # causal: before the image nothing changes
    assert not torch.allclose(a[0, -1], b[0, -1])  # after it, the image is seen
    with pytest.raises(LmstackError, match="image positions"):
        vlm.embed(ids, feats[None, :3])


def test_training_forward_places_each_rows_image_and_leaves_text_rows_alone(vtok, vlm, data, monkeypatch):
    """VLM.forward (the training step's, without data-dependent shapes) gives the logits of embed + lm
    row by row, and a row without image positions is the language model's own."""
    from lmstack.vision.ask import image_inputs
    from lmstack.vision.rows import ImageRows

    cfg = vlm.config.vision
    rows = ImageRows(vtok, cfg, data.train[:4], data.val[:2], 48, 4)
    x = rows.x[:4].clone()  # full rows: the text row below needs the room
    ids, pix = split_packed(x, cfg)
    text = torch.tensor(vtok.encode("What shape is this?")[:48])
    x[3, :48] = vtok.end_of_text_id
    x[3, :len(text)], ids = text, split_packed(x, cfg)[0]
    with torch.no_grad():
        got = vlm(x)
        for b in range(3):
            feats = image_inputs(vlm, pix[b].numpy())[0]
            want = vlm.lm(ids[b:b + 1], embeds=vlm.embed(ids[b:b + 1], feats[None]))
            assert torch.allclose(got[b], want[0], atol=1e-5)
        assert torch.allclose(got[3], vlm.lm(ids[3:4])[0], atol=1e-5)
    import lmstack.vision.rows as rows_mod

    real = rows_mod.image_example

    def one_short(*args):  # a row whose image positions do not match its image's features
        ids, targets = real(*args)
        drop = ids.index(vtok.special(IMAGE_PAD))
        return ids[:drop] + ids[drop + 1:], targets[:drop] + targets[drop + 1:]

    monkeypatch.setattr(rows_mod, "image_example", one_short)
    with pytest.raises(LmstackError, match="image positions"):
        ImageRows(vtok, cfg, data.train[:1], data.val[:1], 48, 1)


def test_mmproj_pair_reloads_exactly(vtok, vlm, data, tmp_path):
    from lmstack.io.gguf_file import export_gguf
    from lmstack.vision.ask import ask
    from lmstack.vision.mmproj import export_mmproj, read_mmproj
    from lmstack.vision.pair import load_pair

    export_gguf(vlm.lm, vtok, tmp_path / "model.gguf")
    export_mmproj(vlm, tmp_path / "mmproj.gguf")
    back, tok2 = load_pair(tmp_path / "model.gguf", tmp_path / "mmproj.gguf")
    sa, sb = vlm.state_dict(), back.state_dict()
    assert set(sa) == set(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert back.config.to_dict() == vlm.config.to_dict()
    imgs = [s.image for s in data.val[:3]]
    qs = ["Describe the image."] * 3
    assert ask(back, tok2, imgs, qs, 6) == ask(vlm, vtok, imgs, qs, 6)
    import gguf

    meta = gguf.GGUFReader(str(tmp_path / "mmproj.gguf")).fields
    assert bytes(meta["clip.projector_type"].parts[-1]).decode() == "idefics3"
    assert "mm.model.fc.weight" in {t.name for t in gguf.GGUFReader(str(tmp_path / "mmproj.gguf")).tensors}
    with pytest.raises(LmstackError, match="not an idefics3 mmproj"):
        read_mmproj(tmp_path / "model.gguf")
    with pytest.raises(LmstackError, match="not a pair"):
        other = VLM(VLMConfig(vlm.config.vision, preset("micro", vocab_size=vtok.vocab_size), 0))
        export_mmproj(other, tmp_path / "other.gguf")
        load_pair(tmp_path / "model.gguf", tmp_path / "other.gguf")


def test_held_out_split_is_by_image(data):
    train = {s.image.tobytes() for s in data.train}
    assert not any(s.image.tobytes() in train for s in data.val)
    assert {s.kind for s in data.val} == {"digit", "shape", "count", "text"}
    again = build_data(24, seed=0, n_train=40, n_val=8)
    assert all(np.array_equal(a.image, b.image) and a.qa == b.qa for a, b in zip(data.val, again.val, strict=True))


def test_mix_weights_the_training_side_by_kind_and_leaves_the_held_out_side_unseen(data):
    """mix multiplies each kind's training scenes and repeats the bundled digits; every held-out
    image is still one training never shows (more scenes of a kind can only drop held-out ones)."""
    from lmstack.vision.train import VisionTrainConfig

    mixed = build_data(24, seed=0, n_train=40, n_val=8, mix={"digit": 2, "text": 3})
    kinds = lambda d: {k: sum(s.kind == k for s in d.train) for k in ("digit", "shape", "count", "text")}
    plain, more = kinds(data), kinds(mixed)
    assert more == {"digit": 2 * plain["digit"], "shape": 40, "count": 40, "text": 120}
    assert [s.caption for s in mixed.train if s.kind == "text"][:40] == [s.caption for s in data.train
                                                                         if s.kind == "text"]
    seen = {s.image.tobytes() for s in mixed.train}
    assert not any(s.image.tobytes() in seen for s in mixed.val)
    assert {s.image.tobytes() for s in mixed.val} <= {s.image.tobytes() for s in data.val}
    with pytest.raises(LmstackError, match="unknown kind 'faces'"):
        VisionTrainConfig(mix={"faces": 2})
    with pytest.raises(LmstackError, match=r"mix\[text\]"):
        VisionTrainConfig(mix={"text": 0})


def test_numbers_share_moves_training_text_scenes_only(data):
    """numbers > 0.5 turns training words into numbers at that rate; the held-out side keeps its
    half-and-half draw picture for picture (only training duplicates can drop a held-out image)."""
    from lmstack.vision.train import VisionTrainConfig, run_data

    many = build_data(24, seed=0, n_train=400, n_val=40, numbers=0.8)
    half = build_data(24, seed=0, n_train=400, n_val=40)
    share = lambda d: np.mean([s.caption.startswith("the number") for s in d if s.kind == "text"])
    assert 0.74 < share(many.train) < 0.86 and 0.42 < share(half.train) < 0.58
    assert share(many.val) == share(half.val)
    assert [s.caption for s in many.val] == [s.caption for s in half.val]
    assert not {s.image.tobytes() for s in many.val} & {s.image.tobytes() for s in many.train}
    again = run_data({"seed": 0, "n_train": 400, "n_val": 40, "numbers": 0.8}, 24)
    assert [s.caption for s in again.train] == [s.caption for s in many.train]
    with pytest.raises(LmstackError, match=r"numbers .* \[0.5, 1\]"):
        build_data(24, numbers=0.3)
    with pytest.raises(LmstackError, match="numbers"):
        VisionTrainConfig(numbers=1.5)


def test_longer_training_numbers_leave_the_held_out_side_alone():
    """max_digits 4: training numbers of 1-4 digits, each length about as often; held-out still 0-99."""
    from lmstack.vision.data import scene_samples
    from lmstack.vision.train import VisionTrainConfig, run_data

    long = build_data(24, seed=0, n_train=400, n_val=40, max_digits=4)
    short = build_data(24, seed=0, n_train=400, n_val=40)
    digits = lambda d: [len(s.qa[0][2]) for s in d if s.kind == "text" and s.qa[0][2].isdigit()]
    counts = np.bincount(digits(long.train), minlength=5)[1:]
    assert counts.min() > 0.6 * counts.mean() and max(digits(short.train)) == 2
    held_out = {s.image.tobytes() for s in scene_samples("text", 40, 1, 24)}  # the held-out stream, seed 0
    text_val = [s for s in long.val if s.kind == "text"]
    assert len(text_val) > 30 and all(s.image.tobytes() in held_out for s in text_val)
    assert max(digits(long.val)) == 2 and max(digits(short.val)) == 2
    again = run_data({"seed": 0, "n_train": 400, "n_val": 40, "max_digits": 4}, 24)
    assert [s.caption for s in again.train] == [s.caption for s in long.train]
    with pytest.raises(LmstackError, match="max_digits"):
        build_data(24, max_digits=5)
    with pytest.raises(LmstackError, match="max_digits"):
        VisionTrainConfig(max_digits=1)


def test_fresh_scenes_redraw_each_epoch_never_a_held_out_image_and_replay(data, vlm):
    """fresh: epoch 0 and the held-out side are as without it; each later epoch has new scenes in the
    same kinds and counts, none a held-out image, the same on every call; batches replay by step."""
    from lmstack.vision.rows import ImageRows
    from lmstack.vision.train import VisionTrainConfig, default_tokenizer

    fresh = build_data(24, seed=0, n_train=40, n_val=8, fresh=True, digit_shift=2)
    pics = lambda d: [s.image.tobytes() for s in d]
    assert pics(fresh.train) == pics(data.train) and pics(fresh.val) == pics(data.val)
    kinds = lambda d: sorted(s.kind for s in d)
    e1, e2 = fresh.epoch(1), fresh.epoch(2)
    assert kinds(e1) == kinds(e2) == kinds(data.train)
    assert fresh.epoch(2) is e2  # the last draw is kept: stage 2 starts its second epoch where stage 1 did
    scenes = lambda d: {s.image.tobytes() for s in d if s.kind != "digit"}
    assert len(scenes(e1) - scenes(data.train)) > len(scenes(e1)) // 2 and scenes(e1) != scenes(e2)
    assert not (scenes(e1) | scenes(e2)) & set(pics(data.val))
    assert pics(build_data(24, seed=0, n_train=40, n_val=8, fresh=True, digit_shift=2).epoch(1)) == pics(e1)
    digits = [(a, b) for a, b in zip(data.train, e1, strict=True) if a.kind == "digit"]  # moved, not redrawn
    assert all(a.caption == b.caption and b.image.sum() <= a.image.sum() for a, b in digits)
    assert sum(not np.array_equal(a.image, b.image) for a, b in digits) > 0.8 * len(digits)
    assert not {b.image.tobytes() for _, b in digits} & set(pics(data.val))
    unmoved = build_data(24, seed=0, n_train=40, n_val=8, fresh=True).epoch(1)
    assert [s.image.tobytes() for s in unmoved if s.kind == "digit"] == [a.image.tobytes() for a, _ in digits]
    assert data.redraw is None and data.epoch(3) is data.train
    with pytest.raises(LmstackError, match="needs fresh_scenes"):
        VisionTrainConfig(fresh_scenes=False, digit_shift=2)

    cfg = VisionTrainConfig(vision=vlm.config.vision)  # the default row length and vocabulary
    tok = default_tokenizer(fresh, cfg.vocab_size)
    make = lambda: ImageRows(tok, cfg.vision, fresh.train, fresh.val, cfg.seq_len, 16, redraw=fresh.redraw)
    rows = make()
    step = len(rows) // 16  # its batch reaches into epoch 1
    x, y = rows.get(step)
    again = make().get(step)
    assert torch.equal(x, again[0]) and torch.equal(y, again[1])
    assert len(x) == 16
    n = len(rows)
    seen = {p.numpy().tobytes() for p in split_packed(x[-(16 * (step + 1) - n):], cfg.vision)[1]}
    for later in range(step + 1, 2 * n // 16):  # the rest of epoch 1
        seen |= {p.numpy().tobytes() for p in split_packed(rows.get(later)[0], cfg.vision)[1]}
    assert seen <= set(pics(e1)) and seen - set(pics(data.train))


@pytest.fixture(scope="module")
def vrun(vtok, vlm, tmp_path_factory):
    """A vision run directory as lmstack vision train leaves it (untrained weights)."""
    from lmstack.io.files import write_json
    from lmstack.vision.train import save_vlm

    d = tmp_path_factory.mktemp("vrun")
    save_vlm(vlm, d)
    vtok.save(d / "tokenizer.json")
    write_json(d / "run.json", {"kind": "vlm", "seed": 0, "n_train": 40, "n_val": 8})
    return d


def test_a_short_run_records_its_data_options_and_rebuilds_its_data(tmp_path):
    """The three stages end to end on a few steps; run.json holds what rebuilds the run's images."""
    import json

    from lmstack.vision.train import VisionTrainConfig, run_data, stage_config, train_vlm

    cfg = VisionTrainConfig(out_dir=str(tmp_path / "v"), vision=VisionConfig(**SMALL), n_train=12, n_val=4,
                            numbers=0.7, max_digits=3, group_images=True,
                            **stage_config({"stage0": 2, "stage1": 2, "stage2": 3}, batch=4, device="cpu"))
    info = train_vlm(cfg, progress=False)
    saved = json.loads((tmp_path / "v" / "run.json").read_text())
    assert (saved["numbers"], saved["max_digits"], saved["group_images"]) == (0.7, 3, True)
    assert info["stages"]["stage2"]["steps"] == 3
    again = run_data(saved, cfg.vision.image_size)
    want = build_data(cfg.vision.image_size, 0, 12, 4, mix=cfg.mix, numbers=0.7, max_digits=3)
    assert [s.caption for s in again.train] == [s.caption for s in want.train]
    assert [s.caption for s in again.val] == [s.caption for s in want.val]


def test_a_run_starts_from_another_runs_trained_encoder(vrun, vlm, data, tmp_path, capsys):
    from lmstack.vision.train import VisionTrainConfig, build_model, trained_encoder

    vision, weights = trained_encoder(vrun)
    assert vision == vlm.config.vision
    fresh, _, _ = build_model(VisionTrainConfig(vision=vision, vocab_size=300), data)
    reused, _, _ = build_model(VisionTrainConfig(vision=vision, vocab_size=300, encoder=str(vrun)), data)
    for k, v in vlm.encoder.state_dict().items():
        assert torch.equal(reused.encoder.state_dict()[k], v)
    assert not torch.equal(fresh.encoder.patch_embd.weight, vlm.encoder.patch_embd.weight)
    with pytest.raises(LmstackError, match="not this run's"):
        build_model(VisionTrainConfig(vision=VisionConfig(**{**SMALL, "dim": 16, "ffn_dim": 32}), vocab_size=300,
                                      encoder=str(vrun)), data)
    with pytest.raises(LmstackError, match="not a finished vision run"):
        trained_encoder(tmp_path)
    assert "leave out --encoder-dim" in _fails(capsys, ["vision", "train", "--encoder", str(vrun), "--encoder-dim",
                                                        "32", "--out", str(tmp_path / "v")])


def _fails(capsys, argv):
    from lmstack.cli import main

    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 1 and "Traceback" not in err, err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err
    return lines[0]


def test_cli_asks_exports_and_evaluates(vrun, vlm, vtok, data, tmp_path, capsys):
    import json

    from lmstack.cli import main
    from lmstack.vision.ask import ask

    img = tmp_path / "scene.png"
    img.write_bytes(png(data.val[-1].image))
    main(["chat", "--model", str(vrun), "--image", str(img), "What shape is this?", "--max-new-tokens", "4"])
    assert capsys.readouterr().out == ask(vlm, vtok, [data.val[-1].image], ["What shape is this?"], 4)[0] + "\n"
    main(["export", str(vrun)])
    assert (vrun / "model.gguf").stat().st_size > 0 and (vrun / "mmproj.gguf").stat().st_size > 0
    main(["eval", str(vrun), "--vision", "--limit", "4"])
    r = json.loads((vrun / "eval_vision.json").read_text())
    assert {"digit", "caption"} <= set(r["accuracy"]) and all(0 <= v["image"] <= 1 for v in r["accuracy"].values())


def test_eval_splits_reading_into_words_and_numbers(vrun):
    from lmstack.vision.evaluate import evaluate_vlm

    acc = evaluate_vlm(vrun, progress=False)["accuracy"]
    word, number, text = acc["text:word"], acc["text:number"], acc["text"]
    assert word["n"] > 0 and number["n"] > 0 and word["n"] + number["n"] == text["n"]
    for m in ("image", "blank image", "no image"):
        assert abs(word[m] * word["n"] + number[m] * number["n"] - text[m] * text["n"]) < 1e-6


def test_cli_bad_input(vrun, data, tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_bytes(png(data.val[0].image)[:70])  # a truncated PNG
    assert "corrupt" in _fails(capsys, ["chat", "--model", str(vrun), "--image", str(bad), "What?"])
    assert "does not exist" in _fails(capsys, ["chat", "--model", str(vrun), "--image", str(tmp_path / "no.png"), "?"])
    assert "text-only" in _fails(capsys, ["chat", "--model", str(tmp_path), "--image", str(bad), "What?"])
    assert "one question about one image" in _fails(capsys, ["chat", "--model", str(vrun), "What?"])
    assert "three numbers" in _fails(capsys, ["vision", "train", "--steps", "1,2", "--out", str(tmp_path / "v")])
    assert "scale_factor 3" in _fails(capsys, ["vision", "train", "--scale-factor", "3", "--out", str(tmp_path / "v")])
    assert "kind=times" in _fails(capsys, ["vision", "train", "--mix", "text:3", "--out", str(tmp_path / "v")])
    assert "unknown kind 'faces'" in _fails(capsys, ["vision", "train", "--mix", "faces=2", "--out",
                                                     str(tmp_path / "v")])
    assert "needs fresh_scenes" in _fails(capsys, ["vision", "train", "--no-fresh-scenes", "--digit-shift", "2",
                                                   "--out", str(tmp_path / "v")])


@pytest.mark.parametrize("scale", [2, 1])
def test_default_rows_hold_the_longest_example_at_every_scale_factor(data, scale):
    """Fewer patches merged means more image tokens; the default row length grows with them (64 at the
    default 4 tokens a view), so every caption and question, in the default vocabulary, still fits."""
    from lmstack.vision.rows import ImageRows
    from lmstack.vision.train import VisionTrainConfig, default_tokenizer

    assert VisionTrainConfig().seq_len == 64
    cfg = VisionTrainConfig(vision=VisionConfig(**{**SMALL, "scale_factor": scale}))
    assert cfg.seq_len == 56 + 2 * cfg.vision.tokens_per_view
    tok = default_tokenizer(data, VisionTrainConfig.vocab_size)
    rows = ImageRows(tok, cfg.vision, data.train, data.val, cfg.seq_len, 4)  # raises if one does not fit
    assert rows.x.shape[1] > cfg.seq_len and (rows.y[:, -1] == -1).any()
