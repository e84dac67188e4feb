"""The inference engine against the model it accelerates: same tokens, same logits, and each
sampling, streaming, batching and quantisation feature doing what it says."""

from __future__ import annotations

import threading

import pytest
import torch

from lmstack.engine import Engine, SamplingParams
from lmstack.engine.forward import FastTransformer
from lmstack.engine.quant import QLinear
from lmstack.engine.sampling import Sampler
from lmstack.engine.stream import Detokenizer, TextStream
from lmstack.errors import LmstackError
from tests.conftest import counting_submits, spread_out_model

GREEDY = dict(temperature=0.0, stop_token_ids=[])


@pytest.fixture(scope="module")
def model(tokenizer):
    return spread_out_model(tokenizer.vocab_size, seed=0)


@pytest.fixture(scope="module")
def engine(model, tokenizer):
    e = Engine(model, tokenizer, max_batch=4)
    yield e
    e.close()


def prompts(tokenizer):
    return [tokenizer.encode(t) for t in ("ROMEO:\nThe king", "JULIET:", "HAMLET:\nGood night sweet lady, thou")]


def reference_greedy(model, ids, n, penalty=1.0):
    """Greedy decoding with full forward passes (no cache), optionally with the repetition penalty."""
    ids = list(ids)
    out = []
    for _ in range(n):
        logits = model(torch.tensor([ids + out]))[0, -1]
        if penalty != 1.0:
            seen = torch.tensor(sorted(set(ids + out)))
            s = logits[seen]
            logits[seen] = torch.where(s > 0, s / penalty, s * penalty)
        out.append(int(logits.argmax()))
    return out


# ---- parity with lmstack.model ------------------------------------------------------------------
def test_greedy_tokens_equal_model_generate(model, engine, tokenizer):
    for ids in prompts(tokenizer):
        ref = model.generate(torch.tensor([ids]), 24, temperature=0)[0, len(ids):].tolist()
        got = engine.generate([ids], SamplingParams(max_new_tokens=24, **GREEDY))[0]
        assert got.token_ids == ref
        assert got.finish_reason == "length" and got.prompt_tokens == len(ids)


def test_prefill_and_decode_logits_match_model(model, engine, tokenizer):
    ids = prompts(tokenizer)[2]
    # the engine's model, built apart: the engine's thread lets a finished request's cache slot go
    # after its caller has the tokens, so writing into the live engine's slots here would race with it
    fm = FastTransformer(model, engine.quant, engine.max_batch, None)
    with torch.inference_mode():
        full = model(torch.tensor([ids]))[0]
        pre = fm.prefill(torch.tensor(ids[:-3]), slot=0, all_logits=True)
        torch.testing.assert_close(pre, full[:-3], atol=1e-4, rtol=0)
        for j in range(len(ids) - 3, len(ids)):  # the KV cache carries the context forward
            step = fm.decode(torch.tensor([ids[j]]), torch.tensor([j]), j + 1)[0]
            torch.testing.assert_close(step, full[j], atol=1e-4, rtol=0)


def test_batched_generation_equals_one_at_a_time(engine, tokenizer):
    """Different prompt lengths and limits: sequences finish at different steps and the survivors
    move between cache slots; nothing may change in anyone's tokens. The first decode step is held
    until all three are submitted, so they do run batched."""
    ps = prompts(tokenizer)
    params = [SamplingParams(max_new_tokens=n, **GREEDY) for n in (20, 7, 13)]
    sampled = [SamplingParams(max_new_tokens=15, temperature=0.9, top_k=40, seed=s, stop_token_ids=[])
               for s in (1, 2, 3)]
    for plist in (params, sampled):
        solo = [engine.generate([p], sp)[0] for p, sp in zip(ps, plist, strict=True)]
        steps = []
        with pytest.MonkeyPatch.context() as mp:
            submitted, all_in = counting_submits(mp, engine, len(ps))

            def on_step(ids, gate=all_in, seen=steps):
                gate.wait(timeout=30)
                seen.append(set(ids))

            mp.setattr(engine, "on_step", on_step)
            together = engine.generate(ps, plist)
        assert [c.token_ids for c in together] == [c.token_ids for c in solo]
        assert [c.text for c in together] == [c.text for c in solo]
        assert {r.id for r in submitted} in steps  # all three advanced in one forward pass


def test_kv_cache_reused_after_other_sequences(model, engine, tokenizer):
    """A slot that held a longer sequence before must not leak old keys into a new one."""
    long_ids = prompts(tokenizer)[2]
    engine.generate([long_ids], SamplingParams(max_new_tokens=30, **GREEDY))
    ids = prompts(tokenizer)[1]
    ref = model.generate(torch.tensor([ids]), 12, temperature=0)[0, len(ids):].tolist()
    assert engine.generate([ids], SamplingParams(max_new_tokens=12, **GREEDY))[0].token_ids == ref


# ---- sampling ---------------------------------------------------------------------------------
def test_seed_reproducible_and_seeds_differ(engine, tokenizer):
    ids = prompts(tokenizer)[0]
    p = lambda s: SamplingParams(max_new_tokens=20, temperature=1.0, seed=s, stop_token_ids=[])
    a, b, c = (engine.generate([ids], p(s))[0].token_ids for s in (7, 7, 8))
    assert a == b and a != c


def test_top_k_restricts_support(model, engine, tokenizer):
    ids = prompts(tokenizer)[0]
    out = engine.generate([ids], SamplingParams(max_new_tokens=20, temperature=2.0, top_k=3, seed=0,
                                                stop_token_ids=[]))[0].token_ids
    logits = model(torch.tensor([ids + out]))[0, len(ids) - 1:-1]
    top3 = logits.topk(3).indices
    assert all(t in row.tolist() for t, row in zip(out, top3, strict=True))
    # and top_k=1 is greedy whatever the temperature
    one = engine.generate([ids], SamplingParams(max_new_tokens=20, temperature=5.0, top_k=1, seed=3,
                                                stop_token_ids=[]))[0]
    assert one.token_ids == engine.generate([ids], SamplingParams(max_new_tokens=20, **GREEDY))[0].token_ids


def test_top_p_keeps_the_nucleus():
    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))
    draws = lambda top_p: {Sampler(SamplingParams(top_p=top_p, seed=s), [0], 4)(logits) for s in range(200)}
    assert draws(0.5) == {0}  # token 0 alone holds half the mass
    assert draws(0.79) == {0, 1}
    assert draws(0.9) == {0, 1, 2}
    assert draws(1.0) == {0, 1, 2, 3}


def test_presence_and_frequency_penalties_count_the_reply_as_openai_does():
    logits = torch.tensor([3.0, 2.6, 2.0, -1.0])
    greedy = dict(temperature=0)

    def pick(sampler: Sampler, reply: list[int]) -> int:
        for t in reply:
            sampler.observe(t)
        return sampler(logits)

    plain = Sampler(SamplingParams(**greedy), [0, 0, 0], 4)
    assert plain.greedy_plain and pick(plain, [0, 0]) == 0  # no penalty, no state
    assert not Sampler(SamplingParams(frequency_penalty=0.1, **greedy), [], 4).greedy_plain  # batched argmax skips it
    # presence: 0.5 off token 0 once it is in the reply, however often
    assert pick(Sampler(SamplingParams(presence_penalty=0.5, **greedy), [1], 4), [0]) == 1
    assert pick(Sampler(SamplingParams(presence_penalty=0.5, **greedy), [1], 4), [0, 1]) == 0  # 2.5 vs 2.1
    # frequency: 0.3 per occurrence; the prompt's tokens are not counted
    freq = lambda seen: pick(Sampler(SamplingParams(frequency_penalty=0.3, **greedy), [0, 0, 0], 4), seen)
    assert freq([]) == 0 and freq([0]) == 0 and freq([0, 0]) == 1  # 3.0 - 0.6 = 2.4 < 2.6
    assert pick(Sampler(SamplingParams(frequency_penalty=-1.0, **greedy), [], 4), [3, 3, 3, 3, 3]) == 3
    with pytest.raises(LmstackError, match="frequency_penalty must be in"):
        SamplingParams(frequency_penalty=2.5).check()
    with pytest.raises(LmstackError, match="presence_penalty must be in"):
        SamplingParams(presence_penalty=float("nan")).check()


def test_repetition_penalty_matches_reference(model, engine, tokenizer):
    ids = prompts(tokenizer)[0]
    ref = reference_greedy(model, ids, 16, penalty=3.0)
    got = engine.generate([ids], SamplingParams(max_new_tokens=16, repetition_penalty=3.0, **GREEDY))[0]
    assert got.token_ids == ref
    assert ref != reference_greedy(model, ids, 16)  # the penalty changed something


def test_stop_string_cuts_output(engine, tokenizer):
    ids = prompts(tokenizer)[0]
    full = engine.generate([ids], SamplingParams(max_new_tokens=40, **GREEDY))[0]
    assert len(full.text) > 12
    stop = full.text[6:9]
    cut = engine.generate([ids], SamplingParams(max_new_tokens=40, stop=["zzzz", stop], **GREEDY))[0]
    assert cut.finish_reason == "stop"
    assert cut.text == full.text[: full.text.index(stop)]
    assert len(cut.token_ids) < len(full.token_ids)


def test_stop_token_ids_and_length(engine, tokenizer):
    ids = prompts(tokenizer)[0]
    full = engine.generate([ids], SamplingParams(max_new_tokens=20, **GREEDY))[0]
    assert full.finish_reason == "length" and len(full.token_ids) == 20
    stop_id = full.token_ids[5]
    cut = engine.generate([ids], SamplingParams(max_new_tokens=20, temperature=0, stop_token_ids=[stop_id]))[0]
    assert cut.finish_reason == "stop"
    assert cut.token_ids == full.token_ids[: full.token_ids.index(stop_id)]  # the stop token is not output
    # by default the tokenizer's end-of-text / end-of-turn ids stop generation
    assert tokenizer.end_of_text_id in engine.default_stop_ids


# ---- streaming ---------------------------------------------------------------------------------
def test_detokenizer_handles_characters_split_across_tokens(tokenizer):
    text = "héllo wörld 日本語 🎉 ok"
    ids = tokenizer.encode(text)
    assert len(ids) > len(text.split())  # the small vocabulary splits characters into bytes
    d = Detokenizer(tokenizer)
    pieces = [d.push(i) for i in ids] + [d.flush()]
    assert "".join(pieces) == text
    assert not any("\ufffd" in p for p in pieces)
    assert sum(1 for p in pieces if p) > 5  # it streams, not all at the end


def test_text_stream_holds_back_possible_stop_strings(tokenizer):
    ids = tokenizer.encode("the king and the queen")
    s = TextStream(tokenizer, stop=["the q"])
    shown = []
    for i in ids:
        piece, hit = s.push(i)
        shown.append(piece)
        if hit:
            break
    assert hit and "".join(shown) == "the king and " == s.text


def test_streamed_events_concatenate_to_the_final_text(engine, tokenizer):
    ids = prompts(tokenizer)[1]
    req = engine.submit(ids, SamplingParams(max_new_tokens=30, temperature=1.0, seed=5, stop_token_ids=[]))
    events = list(req)
    assert events[-1].token_id == -1 and events[-1].finish_reason == "length"
    assert all(e.finish_reason is None for e in events[:-1])
    text = "".join(e.text for e in events)
    c = req.result()
    assert text == c.text == tokenizer.decode(c.token_ids, skip_special=True)
    assert [e.token_id for e in events[:-1]] == c.token_ids


# ---- quantisation -------------------------------------------------------------------------------
@pytest.mark.parametrize("quant,max_err,min_agree", [("int8", 0.04, 0.95), ("int4", 0.35, 0.75)])
def test_quantised_logits_close_to_fp32(model, tokenizer, engine, quant, max_err, min_agree):
    """Teacher-forced on the fp32 greedy path: mean logit error relative to the logits' spread, and
    how often the quantised model would pick the same next token. (Random Gaussian weights in a
    64-wide model are a hard case for 4 bits; real models lose much less.)"""
    q = Engine(model, tokenizer, quant=quant, max_batch=1)
    assert {m.kind for lay in q.model.layers for m in lay.modules() if isinstance(m, QLinear)} == {quant}
    assert q.model.output.kind == "int8"  # the vocabulary matrix keeps 8 bits
    assert q.model.weight_bytes() < engine.model.weight_bytes() / (3 if quant == "int8" else 4.5)
    agree, worst = [], 0.0
    for ids in prompts(tokenizer):
        path = ids + engine.generate([ids], SamplingParams(max_new_tokens=24, **GREEDY))[0].token_ids
        with torch.inference_mode():
            ref = engine.model.prefill(torch.tensor(path), 0, all_logits=True)
            got = q.model.prefill(torch.tensor(path), 0, all_logits=True)
        worst = max(worst, float((got - ref).abs().mean() / ref.std()))
        agree += (got.argmax(-1) == ref.argmax(-1)).tolist()
    assert worst < max_err
    assert sum(agree) / len(agree) >= min_agree
    ids = prompts(tokenizer)[0]
    assert len(q.generate([ids], SamplingParams(max_new_tokens=10, **GREEDY))[0].token_ids) == 10
    q.close()


@pytest.mark.parametrize("kernel", ["torch", "lmstack"])
def test_int4_kernel_error_within_the_quantisation_step(kernel, monkeypatch):
    """Each weight is off by at most half its group's step (range / 15); the output error is bounded
    by that, plus the rounding of the activations: to bfloat16 for PyTorch's kernel, to int8 in
    blocks of 32 (half a step of the block's largest / 127) for lmstack's."""
    monkeypatch.setenv("LMSTACK_KERNELS", kernel)
    torch.manual_seed(1)
    w, x = torch.randn(192, 96), torch.randn(3, 96)
    lin = QLinear(w, "int4")
    assert lin.kind == "int4" and lin.ours == (kernel == "lmstack")
    assert lin.nbytes() < w.numel() * 0.7  # 4 bits + two 16-bit numbers per 32 weights
    g = w.view(192, 3, 32)
    half_step = ((g.amax(-1) - g.amin(-1)) / 30).repeat_interleave(32, 1)
    x_err = (x.abs() * 2**-8 if kernel == "torch"
             else (x.abs().view(3, 3, 32).amax(-1) / 254).repeat_interleave(32, 1))
    bound = x.abs() @ half_step.t() + x_err @ w.abs().t() + x_err @ half_step.t()
    err = (lin(x) - x @ w.t()).abs()
    assert (err <= 1.02 * bound + 1e-3).all()
    assert err.mean() > 0.01 * bound.mean()  # it really is quantised
    assert QLinear(torch.randn(100, 96), "int4").kind == "int8"  # 100 rows cannot be packed in 64s


def test_compiled_vocabulary_product_keeps_fp32_activations(monkeypatch):
    """With PyTorch's kernels (CPUs with AVX-512), compiled, one row through a vocabulary-sized int8
    matrix is a plain fp32 reduction: it equals the dequantised product to fp32 rounding, closer than
    the bf16-activation kernel eager uses."""
    monkeypatch.setenv("LMSTACK_KERNELS", "torch")
    torch.manual_seed(2)
    lin, x = QLinear(torch.randn(16384, 64), "int8"), torch.randn(1, 1, 64)
    exact = x @ (lin.weight.float() * lin.scale.float()[:, None]).t()
    with torch.inference_mode():
        compiled = torch.compile(lin, fullgraph=True)(x)
        eager = lin(x)
    assert compiled.shape == eager.shape == (1, 1, 16384)
    assert (compiled - exact).abs().max() < 1e-4
    assert (eager - exact).abs().max() > 1e-3  # the kernel path does round the activations
    rows = torch.randn(3, 64)
    with torch.inference_mode():  # several rows take the kernel, compiled or not
        assert torch.allclose(torch.compile(lin)(rows), lin(rows), atol=1e-5)


# ---- scheduling ---------------------------------------------------------------------------------
def test_concurrent_submits_share_decode_steps(engine, tokenizer):
    ps = prompts(tokenizer) + [tokenizer.encode("KING:")]
    params = SamplingParams(max_new_tokens=10, **GREEDY)
    solo = [engine.generate([p], params)[0].token_ids for p in ps]
    submitted, steps, ids = threading.Event(), [], []
    lock = threading.Lock()

    def on_step(req_ids):
        submitted.wait(timeout=30)  # hold the first step until every thread has submitted
        steps.append(list(req_ids))

    results = [None] * len(ps)

    def worker(i):
        req = engine.submit(ps[i], params)
        with lock:
            ids.append(req.id)
            if len(ids) == len(ps):
                submitted.set()
        results[i] = req.result().token_ids

    engine.on_step = on_step
    try:
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(ps))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    finally:
        engine.on_step = None
    assert results == solo
    assert any(sorted(s) == sorted(ids) for s in steps)  # all four advanced in one forward pass


def test_cancel_stops_a_request_and_frees_its_slot(engine, tokenizer):
    """The engine is held before the step that would make a 4th token until cancel() has been called,
    so the request must end with exactly 3 tokens however fast or slow either thread runs."""
    ids = prompts(tokenizer)[0]
    before = engine.stats["tokens"]
    submitted, cancelled, box = threading.Event(), threading.Event(), {}

    def on_step(req_ids):
        submitted.wait(timeout=30)
        req = box["req"]
        if req.id in req_ids and len(req.token_ids) == 3:
            cancelled.wait(timeout=30)

    engine.on_step = on_step
    try:
        box["req"] = req = engine.submit(ids, SamplingParams(max_new_tokens=50, temperature=1.0, seed=0,
                                                             stop_token_ids=[]))
        submitted.set()
        got = []
        for ev in req:
            got.append(ev)
            if len(got) == 3:
                req.cancel()
                cancelled.set()
    finally:
        engine.on_step = None
    assert cancelled.is_set() and got[-1].finish_reason == "stop" and req.cancelled
    assert len(req.token_ids) == 3  # the held step saw the cancel and produced nothing more
    assert engine.generate([ids], SamplingParams(max_new_tokens=4, **GREEDY))[0].finish_reason == "length"
    assert engine.stats["tokens"] - before == 3 + 4  # the cancelled one took no more steps


def test_bad_requests_fail_before_running(engine, tokenizer):
    with pytest.raises(LmstackError, match="does not fit the context"):
        engine.submit(list(range(1, 70)), SamplingParams())
    with pytest.raises(LmstackError, match="empty prompt"):
        engine.submit([], SamplingParams())
    with pytest.raises(LmstackError, match="top_p"):
        engine.submit([1, 2], SamplingParams(top_p=0))
    with pytest.raises(LmstackError, match="vocabulary"):
        engine.submit([1, 10**6], SamplingParams())
    with pytest.raises(LmstackError, match="quantisation"):
        Engine(engine.model, tokenizer, quant="int3")


def test_context_limit_ends_with_length(engine, tokenizer):
    ids = tokenizer.encode("the king " * 12)[:60]
    c = engine.generate([ids], SamplingParams(max_new_tokens=100, **GREEDY))[0]
    assert c.finish_reason == "length" and len(ids) + len(c.token_ids) == engine.max_seq_len


# ---- command line ---------------------------------------------------------------------------------
def test_generate_command_streams_the_engine_output(model, tokenizer, engine, tmp_path, capsys):
    from lmstack.cli import main
    from lmstack.io.gguf_file import export_gguf

    path = export_gguf(model, tokenizer, tmp_path / "tiny.gguf")
    want = engine.generate([tokenizer.encode("ROMEO:")], SamplingParams(max_new_tokens=8, temperature=0))[0].text
    threads = torch.get_num_threads()
    try:
        main(["generate", "--model", str(path), "ROMEO:", "--max-new-tokens", "8", "--temperature", "0",
              "--threads", "1"])
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    assert capsys.readouterr().out == "ROMEO:" + want + "\n"
    with pytest.raises(SystemExit):
        main(["generate", "--model", str(path), "x", "--top-p", "2"])
    assert "error: top_p" in capsys.readouterr().err


class _Terminal:
    """Scripted input for the chat loop; `interrupt` makes the next reply text written raise Ctrl-C."""

    def __init__(self, lines):
        self.lines, self.text, self.interrupt = list(lines), [], False

    def read(self, _prompt):
        line = self.lines.pop(0)
        if isinstance(line, type) and issubclass(line, BaseException):
            raise line()
        if line.startswith("!"):
            self.interrupt, line = True, line[1:]
        return line

    def write(self, s):
        if self.interrupt and s and "(" not in s:
            self.interrupt = False
            raise KeyboardInterrupt
        self.text.append(s)

    def flush(self):
        pass


def test_chat_session_commands_and_ctrl_c(engine):
    from lmstack.chat_cli import chat

    term = _Terminal(["hello there", "/system Be brief.", "!tell me more", KeyboardInterrupt, "/nope",
                      "/reset", "again", EOFError])
    history = chat(engine, SamplingParams(max_new_tokens=6, temperature=0), read=term.read, out=term)
    out = "".join(term.text)
    assert "[stopped]" in out  # Ctrl-C ended the reply, not the session
    assert "Ctrl-D or /exit to quit" in out and "unknown command /nope" in out and "conversation cleared" in out
    assert [m["role"] for m in history] == ["user", "assistant"] and history[0]["content"] == "again"


def test_chat_prompt_uses_template_system_and_drops_old_turns(engine, tokenizer):
    from lmstack.chat_cli import _prompt_ids

    ids, embeds = _prompt_ids(engine, "Be brief.", [], "hi", reserve=8)
    assert embeds is None
    text = tokenizer.decode(ids)
    assert "Be brief." in text and "hi" in text and text.endswith("<|im_start|>assistant\n")
    history = [{"role": r, "content": "the king doth speak " * 2} for r in ("user", "assistant") * 4]
    ids, _ = _prompt_ids(engine, None, history, "hi", reserve=8)
    assert len(ids) + 8 <= engine.max_seq_len and len(history) < 8
    with pytest.raises(LmstackError, match="no room"):
        _prompt_ids(engine, None, [], "the king " * 40, reserve=8)


@pytest.mark.slow
def test_compiled_decoder_gives_the_same_tokens(model, tokenizer, engine):
    compiled = Engine(model, tokenizer, compile=True, max_batch=4)
    ps = prompts(tokenizer)
    params = [SamplingParams(max_new_tokens=n, **GREEDY) for n in (12, 5, 9)]
    assert [c.token_ids for c in compiled.generate(ps, params)] == [c.token_ids for c in engine.generate(ps, params)]
    assert compiled.generate([ps[0]], params[0])[0].token_ids == engine.generate([ps[0]], params[0])[0].token_ids
    compiled.close()


@pytest.mark.slow
def test_smollm2_engine_matches_the_model():
    """The real 30-layer model: fp32 greedy tokens equal Transformer.generate's; int4 stays close."""
    from lmstack.load import load_model

    model, tok, _ = load_model("smollm2-135m-instruct")
    ids = tok.encode("The three primary colours are")
    ref = model.generate(torch.tensor([ids]), 24, temperature=0)[0, len(ids):].tolist()
    fp32 = Engine(model, tok, max_batch=1, max_seq_len=256)
    assert fp32.generate([ids], SamplingParams(max_new_tokens=24, **GREEDY))[0].token_ids == ref
    int4 = Engine(model, tok, quant="int4", max_batch=1, max_seq_len=256)
    assert int4.model.weight_bytes() < 100e6  # no larger than the Q4_1 file it came from
    with torch.inference_mode():
        path = torch.tensor(ids + ref)
        a, b = fp32.model.prefill(path, 0, all_logits=True), int4.model.prefill(path, 0, all_logits=True)
    assert (a.argmax(-1) == b.argmax(-1)).float().mean() >= 0.85
    fp32.close()
    int4.close()
