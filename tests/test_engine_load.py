"""Loading a GGUF file straight into the engine (tensor by tensor: the whole float32 model never
exists), and the compiled decode step's cache on disk behind compile="auto"."""

from __future__ import annotations

import pytest
import torch

from lmstack.engine import Engine, SamplingParams
from lmstack.engine.compiled import artifacts_path, cache_key, is_cached, open_step
from lmstack.engine.forward import FastTransformer
from lmstack.engine.quant import QLinear
from lmstack.errors import LmstackError
from lmstack.io.gguf_file import TensorFile, export_gguf
from lmstack.load import load_model
from tests.conftest import spread_out_model, tiny_config

GREEDY = dict(temperature=0.0, stop_token_ids=[])


@pytest.fixture(scope="module")
def model(tokenizer):
    return spread_out_model(tokenizer.vocab_size, seed=1)


@pytest.mark.parametrize("dtype", ["f32", "q8_0"])
@pytest.mark.parametrize("quant", ["none", "int8", "int4"])
def test_lean_load_builds_the_same_engine_weights(model, tokenizer, tmp_path, dtype, quant):
    """Read tensor by tensor from the file, the engine's weights are exactly those it builds from the
    whole float32 model the training path reads, and so are its logits."""
    path = export_gguf(model, tokenizer, tmp_path / "m.gguf", dtype=dtype)
    full = load_model(path)[0]
    lean = load_model(path, lazy=True)[0]
    ids = torch.tensor(tokenizer.encode("ROMEO:\nThe king doth speak"))
    with torch.inference_mode():
        a, b = FastTransformer(full, quant, 1, 64), FastTransformer(lean, quant, 1, 64)
        assert a.state_dict().keys() == b.state_dict().keys()
        for name, t in a.state_dict().items():
            assert torch.equal(t, b.state_dict()[name]), name
        assert torch.equal(a.prefill(ids, 0, all_logits=True), b.prefill(ids, 0, all_logits=True))


def test_engine_load_generates_what_the_full_model_engine_does(model, tokenizer, tmp_path):
    path = export_gguf(model, tokenizer, tmp_path / "m.gguf", dtype="q8_0")
    ids = tokenizer.encode("JULIET:")
    p = SamplingParams(max_new_tokens=12, **GREEDY)
    lean = Engine.load(path, quant="int8", max_batch=1, compile=False)
    full = Engine(load_model(path)[0], tokenizer, quant="int8", max_batch=1)
    try:
        assert lean.generate([ids], p)[0].token_ids == full.generate([ids], p)[0].token_ids
    finally:
        lean.close()
        full.close()


def test_vocabulary_matrix_is_read_by_blocks_of_rows(model, tokenizer, tmp_path, monkeypatch):
    """int8 quantises the vocabulary matrix a block of rows at a time as it reads it, so it is never
    in float32 whole; and by blocks it gives the same result as from the whole tensor."""
    w = torch.randn(5000, 64)

    class Rows:
        shape, asked = w.shape, []

        def __getitem__(self, rows):
            self.asked.append(rows)
            return w[rows]

    src = Rows()
    by_rows, whole = QLinear(src, "int8"), QLinear(w, "int8")
    assert len(src.asked) == 2 and all(s.stop - s.start <= 4096 for s in src.asked)
    assert torch.equal(by_rows.weight, whole.weight) and torch.equal(by_rows.scale, whole.scale)

    reads = []
    plain = TensorFile.read
    monkeypatch.setattr(TensorFile, "read", lambda self, name, start=0, stop=None: (
        reads.append((name, start, stop)), plain(self, name, start, stop))[1])
    with torch.inference_mode():
        FastTransformer(load_model(export_gguf(model, tokenizer, tmp_path / "m.gguf"), lazy=True)[0], "int8", 1, 64)
    vocab_reads = [r for r in reads if r[0] == "tok_embeddings.weight"]
    assert vocab_reads and all(stop is not None for _, _, stop in vocab_reads)  # never "the whole tensor"
    assert len({n for n, _, _ in reads}) == len(model.state_dict()) - 1  # every tensor once (output is tied)


def test_compile_cache_key_names_everything_the_graphs_depend_on(model):
    cfg = model.config
    key = cache_key(cfg, "int4", 1, 64, 2)
    assert key == cache_key(cfg, "int4", 1, 64, 2)
    others = [cache_key(cfg, "int8", 1, 64, 2), cache_key(cfg, "int4", 4, 64, 2), cache_key(cfg, "int4", 1, 32, 2),
              cache_key(cfg, "int4", 1, 64, 1), cache_key(tiny_config(cfg.vocab_size, dim=128), "int4", 1, 64, 2)]
    assert len({key, *others}) == 6


def test_unusable_compile_cache_is_a_miss_and_is_removed(model):
    key = "0" * 24
    artifacts_path(key).parent.mkdir(parents=True, exist_ok=True)
    artifacts_path(key).write_bytes(b"not a cache")
    assert is_cached(key) and open_step(FastTransformer(model), artifacts_path(key)) is None
    assert not is_cached(key)


def test_bad_compile_value_is_one_line(model, tokenizer):
    with pytest.raises(LmstackError, match="compile must be"):
        Engine(model, tokenizer, compile="yes")


def test_compile_auto_is_eager_until_an_explicit_compile_fills_the_cache(model, tokenizer):
    """The cache is per test (LMSTACK_CACHE): "auto" first runs eagerly, compile=True compiles and
    writes the cache, and "auto" then compiles; all three give the same tokens."""
    ids, p = tokenizer.encode("HAMLET:\nGood night"), SamplingParams(max_new_tokens=8, **GREEDY)
    out = []
    for compile, compiled in (("auto", False), (True, True), ("auto", True)):
        e = Engine(model, tokenizer, quant="int8", compile=compile, max_batch=1)
        try:
            assert e.compiled is compiled
            assert is_cached(cache_key(e.model.config, "int8", 1, e.max_seq_len, e.threads)) is (compile is True
                                                                                                 or compiled)
            out.append(e.generate([ids], p)[0].token_ids)
        finally:
            e.close()
    assert out[0] == out[1] == out[2]


def test_a_cached_compile_runs_the_weights_of_the_model_it_is_given(model, tokenizer):
    """The saved step holds no weights: another model of the same shape, started from the first
    one's cached compile, gives its own tokens, the ones its eager engine gives."""
    other = spread_out_model(tokenizer.vocab_size, seed=2)
    ids, p = tokenizer.encode("HAMLET:\nGood night"), SamplingParams(max_new_tokens=8, **GREEDY)
    out = []
    for m, compile, compiled in ((model, True, True), (other, "auto", True), (other, False, False)):
        e = Engine(m, tokenizer, quant="int8", compile=compile, max_batch=1)
        try:
            assert e.compiled is compiled
            out.append(e.generate([ids], p)[0].token_ids)
        finally:
            e.close()
    assert out[1] == out[2] != out[0]


def test_int4_warns_that_it_rounds_a_lora_fine_tune_away(model, tokenizer, tmp_path, caplog):
    """A merged LoRA moves the weights less than int4's rounding does (docs/security.md), so asking for
    int4 on a LoRA run says so; int8, and a run without a LoRA, load quietly."""
    import json

    from lmstack.io.checkpoint import save_checkpoint

    for name, lora in (("tuned", {"rank": 8, "alpha": 16.0}), ("plain", None)):
        d = tmp_path / name
        save_checkpoint(d / "ckpt.pt", {"model": model.state_dict(), "model_config": model.config.to_dict()})
        tokenizer.save(d / "tokenizer.json")
        (d / "run.json").write_text(json.dumps({"kind": "sft", "lora": lora}))
    for name, quant, warned in (("tuned", "int4", True), ("tuned", "int8", False), ("plain", "int4", False)):
        caplog.clear()
        with caplog.at_level("WARNING", logger="lmstack.engine.engine"):
            Engine.load(tmp_path / name, quant=quant, max_batch=1).close()
        assert any("LoRA fine-tune" in r.message for r in caplog.records) == warned, (name, quant)


def _on_int4_grid(model):
    """The model with every layer matrix on the 4-bit grid a Q4_1 file's weights lie on (16 levels per
    group of 32, the step and offset exact in bf16 and fp16): what int4 rounds back to itself."""
    import copy

    m = copy.deepcopy(model)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if p.dim() == 2 and "layers." in name:
                q = torch.randint(0, 16, p.shape, generator=g)
                q[:, ::32], q[:, 1::32] = 0, 15  # each group spans the whole grid
                p.copy_((q - 8) * 2.0**-5)
    return m


def _readback(layer: QLinear) -> torch.Tensor:
    """The matrix a layer multiplies by (biases aside), through an identity."""
    return layer(torch.eye(layer.n_in)).t()


def test_int4_keeps_a_lora_update_in_float_beside_the_rounded_base(model, tokenizer, tmp_path, caplog):
    """A finished LoRA run keeps its factors beside the merged weights. At int4 the engine rounds the
    base (merged - B·A) and adds B·A back in float: a base already on the 4-bit grid (a Q4_1 file's)
    rounds to itself, so the int4 model is the fine-tune, where rounding the merged weights moves them
    off the grid by a full 4-bit error. In float the split is exact. Loaded quietly."""
    import json

    from lmstack.io.checkpoint import save_checkpoint
    from lmstack.load import lora_update_of
    from lmstack.train.lora import LoRAConfig, apply_lora, lora_update, merge_lora

    tuned = _on_int4_grid(model)
    torch.manual_seed(0)
    apply_lora(tuned, LoRAConfig(rank=4, alpha=8.0, dropout=0.0, targets=("wq", "wv", "w_up", "w_down")))
    with torch.no_grad():
        for name, p in tuned.named_parameters():
            if "lora_b" in name:
                p.normal_(0, 0.01)
    update = lora_update(tuned)
    assert len(update) == 2 * 4 * tuned.config.n_layers
    merge_lora(tuned)
    d = tmp_path / "tuned"
    save_checkpoint(d / "ckpt.pt", {"model": tuned.state_dict(), "model_config": tuned.config.to_dict(),
                                    "lora_update": update})
    tokenizer.save(d / "tokenizer.json")
    (d / "run.json").write_text(json.dumps({"kind": "sft", "lora": {"rank": 4, "alpha": 8.0}}))
    assert lora_update_of(d).keys() == update.keys()

    ids = torch.tensor(tokenizer.encode("ROMEO:\nThe king doth speak"))
    with torch.inference_mode():
        split = FastTransformer(tuned, "none", 1, 64, low_rank=update).prefill(ids, 0, all_logits=True)
        merged = FastTransformer(tuned, "none", 1, 64).prefill(ids, 0, all_logits=True)
        torch.testing.assert_close(split, merged, atol=1e-4, rtol=1e-4)
        kept = FastTransformer(tuned, "int4", 1, 64, low_rank=update)
        rounded = FastTransformer(tuned, "int4", 1, 64)
        exact = FastTransformer(tuned, "none", 1, 64)
        assert kept.low_rank == 4 * 4 * tuned.config.n_layers
        for lay_k, lay_r, lay_x in zip(kept.layers, rounded.layers, exact.layers, strict=True):
            for name in ("qkv", "gate_up", "down"):  # the matrices with an update
                want = lay_x.get_submodule(name).weight
                err_kept = (_readback(lay_k.get_submodule(name)) - want).pow(2).mean().sqrt()
                err_rounded = (_readback(lay_r.get_submodule(name)) - want).pow(2).mean().sqrt()
                assert err_kept < 0.2 * err_rounded, (name, err_kept, err_rounded)
            assert lay_k.wo.lr_a is None and lay_k.qkv.lr_a.shape[0] == 8  # wq and wv: two rank-4 updates

    caplog.clear()
    with caplog.at_level("WARNING", logger="lmstack.engine.engine"):
        e = Engine.load(d, quant="int4", max_batch=1)
    try:
        assert e.model.low_rank == kept.low_rank
        assert not any("LoRA fine-tune" in r.message for r in caplog.records)
    finally:
        e.close()
