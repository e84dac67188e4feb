"""The engine: requests in, streams of tokens out, with a scheduler that batches whatever is running.

One background thread owns the model. Each turn of its loop it admits waiting requests into free
cache slots (prefill, one prompt at a time), then advances every running sequence by one token in a
single batched forward pass (decode), then lets finished sequences go. A request that arrives while
others are decoding joins at the next step instead of waiting for them to finish (continuous
batching). Callers only ever see `Request` objects: iterate one for `TokenEvent`s, or call
`generate()` to run a list of prompts to the end.
"""

from __future__ import annotations

import atexit
import collections
import itertools
import logging
import queue
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import gguf
import torch

from lmstack.engine.compiled import cache_key, compile_decode, is_cached
from lmstack.engine.forward import FastTransformer
from lmstack.engine.quant import QUANTS
from lmstack.engine.sampling import Sampler, SamplingParams, sample_batch
from lmstack.engine.stream import TextStream
from lmstack.errors import LmstackError
from lmstack.io.chat_template import CHATML_TEMPLATE
from lmstack.io.tokenizer import Tokenizer
from lmstack.model import Transformer

log = logging.getLogger(__name__)


@dataclass
class TokenEvent:
    """One generated token and the text it completed. The last event of a request has token_id -1,
    carries any text held back until then, and says why generation ended: "stop" or "length"."""

    token_id: int
    text: str
    finish_reason: str | None


@dataclass
class Completion:
    token_ids: list[int]  # generated tokens; a stop token that ended the reply is not included
    text: str
    finish_reason: str
    prompt_tokens: int


KV_CACHE_MB = 2048  # default bound on the KV cache's memory; the memory used follows the tokens held


def auto_quant(info: dict) -> str:
    """The engine type nearest to how a GGUF file stores its weights (its `general.file_type`): 4 bits
    or fewer (Q4_*, Q3_K, Q2_K, IQ4...) -> int4, 5 to 8 bits (Q5_*, Q6_K, Q8_0) -> int8, floats and
    anything else (a training run, a Hugging Face checkpoint) -> none."""
    try:
        name = gguf.LlamaFileType(int(info.get("general.file_type"))).name
    except (TypeError, ValueError):
        return "none"
    bits = re.search(r"Q(\d)", name)
    return "none" if bits is None else "int4" if int(bits.group(1)) <= 4 else "int8"


_END = object()
STREAM_INTERVAL_S = 0.05  # a streaming reader is woken at least this often (see _Mailbox)
_LIVE: weakref.WeakSet = weakref.WeakSet()  # engines whose scheduler thread may be running


@atexit.register
def _stop_all() -> None:
    """Let scheduler threads finish their step before the interpreter tears down (a thread still
    inside a PyTorch kernel at exit can abort the process)."""
    for engine in list(_LIVE):
        engine.close()


class _Mailbox:
    """Events from the engine thread to the one thread reading a request.

    The engine appends without waking the reader each time: it wakes it for the first event, for
    the last, when STREAM_INTERVAL_S has passed since it last did, and before work that may take
    long (a prefill), so a stream still arrives at once and then at least 20 times a second. On 2
    cores a reader woken for every token puts its thread on a core where one of the engine's
    OpenMP threads is working, and the whole parallel region waits for it (generate() measured 98
    tokens/s where the steps alone ran at 118). `quiet` (a reader that only wants the end) skips
    the wake-ups on the way."""

    def __init__(self):
        self._items: collections.deque = collections.deque()
        self._cv = threading.Condition(threading.Lock())
        self._woken = float("-inf")  # when the reader was last woken
        self.unsent = False  # items appended since then
        self.quiet = False

    def put(self, item, wake: bool = False) -> None:
        self._items.append(item)
        now = time.monotonic()
        if wake or (not self.quiet and now - self._woken >= STREAM_INTERVAL_S):
            self.wake(now)
        else:
            self.unsent = True

    def wake(self, now: float | None = None) -> None:
        with self._cv:
            self._woken, self.unsent = time.monotonic() if now is None else now, False
            self._cv.notify()

    def get(self):
        """The oldest item, waiting for one if there is none (only this reader ever removes items)."""
        with self._cv:
            while not self._items:
                self._cv.wait()
        return self._items.popleft()


class Request:
    """A submitted prompt. Iterate it for TokenEvents (blocking; they are handed over in bursts, the
    first at once, then at least every STREAM_INTERVAL_S: see _Mailbox); cancel() to stop it early."""

    _ids = itertools.count()

    def __init__(self, prompt: list[int], params: SamplingParams, sampler: Sampler, stream: TextStream,
                 stop_ids: set[int], limit: int, embeds: Callable | None = None):
        self.id = next(self._ids)
        self.prompt, self.params, self.sampler, self.stream = prompt, params, sampler, stream
        self.embeds = embeds  # () -> (positions, vectors) of input embeddings, called at prefill
        self.stop_ids, self.limit = stop_ids, limit
        self.reserve = len(prompt) + limit  # the most tokens it can hold in the KV cache
        self.token_ids: list[int] = []
        self.finish_reason: str | None = None
        self.cancelled = False
        self.pos = 0  # where the next input token goes in the cache
        self._events = _Mailbox()
        self._done = False
        self._error: BaseException | None = None

    def cancel(self) -> None:
        self.cancelled = True

    def __iter__(self) -> Iterator[TokenEvent]:
        """The events not yet taken; ends at once if the request has already been read to the end."""
        while not self._done:
            ev = self._events.get()
            if ev is _END:
                self._done = True
            elif isinstance(ev, BaseException):
                self._error = ev
            else:
                yield ev
        if self._error is not None:
            raise self._error

    def result(self) -> Completion:
        """Wait for the end (reading any events not yet taken) and return the whole completion."""
        self._events.quiet = True  # nothing to show on the way: wake only at the end
        for _ in self:
            pass
        return Completion(list(self.token_ids), self.stream.text, self.finish_reason or "stop", len(self.prompt))


class Engine:
    """Fast generation from a `Transformer` and its tokenizer; see the module docstring.

    All PyTorch work (building the fast model, and for `Engine.load` reading the file too) happens
    on the engine's own thread. This matters for speed: with two threads each running OpenMP
    teams, libgomp sees more threads than cores and stops spinning between parallel regions, so
    every region waits on a futex. On 2 cores a model loaded on the main thread and run on another
    decoded at half speed (SmolLM2-135M int4: 28 instead of 14 ms per token)."""

    def __init__(self, model: Transformer, tokenizer: Tokenizer, quant: str = "none", compile: bool | str = False,
                 threads: int | None = None, max_batch: int = 8, max_seq_len: int | None = None,
                 chat_template: str | None = None, kv_cache_mb: float = KV_CACHE_MB):
        """quant="auto" is "none" here: the model's weights are already floats."""
        self._start(lambda: (model, tokenizer, chat_template, None), "none" if quant == "auto" else quant, compile,
                    threads, max_batch, max_seq_len, kv_cache_mb)

    @classmethod
    def load(cls, path: str | Path, quant: str = "auto", compile: bool | str = "auto", threads: int | None = None,
             max_batch: int = 8, max_seq_len: int | None = None, kv_cache_mb: float = KV_CACHE_MB) -> Engine:
        """From a GGUF file, a training run, a HF checkpoint directory or a model name. quant="auto"
        runs a quantised file quantised (`auto_quant`); "none", "int8" or "int4" choose. compile="auto"
        compiles the decode step when a compile of this model, shape and quantisation is cached on
        disk (engine/compiled.py) and runs eagerly otherwise; True compiles (and fills the cache)."""
        from lmstack.load import load_model, lora_update_of

        engine = cls.__new__(cls)

        def read():
            model, tok, info = load_model(path, lazy=True)  # weights converted as they are read
            info = info if isinstance(info, dict) else {}
            if quant == "auto":
                engine.quant = auto_quant(info)
            low_rank = None
            if engine.quant == "int4" and info.get("lora"):  # measured in docs/security.md
                low_rank = lora_update_of(path)
                if low_rank is None:
                    log.warning("%s is a LoRA fine-tune saved without its update apart: int4 rounds much of what it "
                                "learnt away (its error outweighs the LoRA's change); int8 or none keep it", path)
            return model, tok, info.get("tokenizer.chat_template"), low_rank

        engine._start(read, quant, compile, threads, max_batch, max_seq_len, kv_cache_mb)
        return engine

    def _start(self, read: Callable, quant: str, compile: bool | str, threads: int | None, max_batch: int,
               max_seq_len: int | None, kv_cache_mb: float) -> None:
        """Check the settings, then start the engine thread and wait until it has built the model."""
        if quant not in QUANTS + ("auto",):
            raise LmstackError(f"unknown quantisation {quant!r}; choose from auto, {', '.join(QUANTS)}")
        if max_batch < 1:
            raise LmstackError(f"max_batch must be >= 1, got {max_batch}")
        if compile not in (True, False, "auto"):
            raise LmstackError(f"compile must be True, False or 'auto', got {compile!r}")
        if not 0 < kv_cache_mb < float("inf"):
            raise LmstackError(f"kv_cache_mb must be > 0, got {kv_cache_mb}")
        self.kv_cache_mb = kv_cache_mb
        if threads is not None:
            if threads < 1:
                raise LmstackError(f"threads must be >= 1, got {threads}")
            torch.set_num_threads(threads)
        self.threads = threads or torch.get_num_threads()
        self.max_batch, self.quant, self.compile = max_batch, quant, compile
        self.on_step: Callable[[list[int]], None] | None = None  # called with the request ids of each decode step
        self.stats = collections.Counter()  # decode_steps, prefills, tokens
        self._pending: collections.deque[Request] = collections.deque()
        self._running: list[Request] = []  # running[b] lives in cache slot b
        self._cv = threading.Condition()
        self._closed = False
        ready: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, args=(read, max_seq_len, ready), name="lmstack-engine",
                                        daemon=True)
        self._thread.start()
        if (error := ready.get()) is not None:
            raise error
        _LIVE.add(self)

    def _build(self, read: Callable, max_seq_len: int | None) -> None:
        model, tokenizer, chat_template, low_rank = read()
        self.tokenizer = tokenizer
        self.chat_template = chat_template or getattr(tokenizer, "chat_template", None) or CHATML_TEMPLATE
        self.model = FastTransformer(model.eval(), self.quant, self.max_batch, max_seq_len, low_rank)
        self.max_seq_len = self.model.max_seq_len
        self.kv_budget_tokens = int(self.kv_cache_mb * 2**20) // self.model.cache.bytes_per_token
        self.default_stop_ids = set(getattr(tokenizer, "stop_ids", None) or {tokenizer.end_of_text_id})
        self._decode_one = self._decode_many = self.model.decode
        key = cache_key(self.model.config, self.quant, self.max_batch, self.max_seq_len, self.threads,
                        self.model.low_rank)
        self.compiled = self.compile is True or (self.compile == "auto" and is_cached(key))
        if self.compiled:
            self._decode_one, self._decode_many = compile_decode(self.model, self.max_batch, key)

    # ---- requests -------------------------------------------------------------------------------
    def submit(self, prompt_ids: list[int], params: SamplingParams | None = None,
               embeds: Callable[[], tuple[torch.Tensor, torch.Tensor]] | None = None) -> Request:
        """Queue a prompt; returns at once. Safe to call from any thread. `embeds` gives input embeddings
        for some of the prompt's positions, (positions (k,), vectors (k, dim)), in place of their
        tokens' (a VLM's image features); it is called on the engine's thread when the prompt is
        prefilled, so an image encoder runs where the model runs (see the class docstring)."""
        params = params or SamplingParams()
        params.check()
        prompt = [int(t) for t in prompt_ids]
        if not prompt:
            raise LmstackError("empty prompt: give at least one token")
        if len(prompt) >= self.max_seq_len:
            raise LmstackError(f"prompt of {len(prompt)} tokens does not fit the context of {self.max_seq_len}")
        if len(prompt) >= self.kv_budget_tokens:
            raise LmstackError(f"prompt of {len(prompt)} tokens does not fit the KV cache budget of "
                               f"{self.kv_cache_mb:g} MB ({self.kv_budget_tokens} tokens); raise kv_cache_mb")
        vocab = self.model.config.vocab_size
        if min(prompt) < 0 or max(prompt) >= vocab:
            raise LmstackError(f"prompt has token ids outside the vocabulary (0..{vocab - 1})")
        stop_ids = set(params.stop_token_ids if params.stop_token_ids is not None else self.default_stop_ids)
        req = Request(prompt, params, Sampler(params, prompt, vocab), TextStream(self.tokenizer, params.stop),
                      stop_ids, min(params.max_new_tokens, min(self.max_seq_len, self.kv_budget_tokens) - len(prompt)),
                      embeds)
        with self._cv:
            if self._closed:
                raise LmstackError("engine is closed")
            self._pending.append(req)
            self._cv.notify()
        return req

    def generate(self, prompts: list[list[int]], params: SamplingParams | list[SamplingParams] | None = None
                 ) -> list[Completion]:
        """Run prompts to the end, batched together; one Completion per prompt, in order."""
        plist = params if isinstance(params, list) else [params] * len(prompts)
        if len(plist) != len(prompts):
            raise LmstackError(f"{len(prompts)} prompts but {len(plist)} sampling parameter sets")
        reqs = []
        try:
            for ids, p in zip(prompts, plist, strict=True):
                reqs.append(self.submit(ids, p))
            return [r.result() for r in reqs]
        finally:
            for r in reqs:
                r.cancel()  # no-op for finished ones; frees the slots if we were interrupted

    def close(self) -> None:
        """Stop the scheduler thread (running requests end with finish_reason "stop")."""
        with self._cv:
            self._closed = True
            for r in list(self._pending) + self._running:
                r.cancel()
            self._cv.notify()
        if self._thread is not threading.current_thread():
            self._thread.join()

    # ---- the scheduler ------------------------------------------------------------------------
    def _run(self, read: Callable, max_seq_len: int | None, ready: queue.Queue) -> None:
        torch.set_num_threads(self.threads)  # per thread under OpenMP
        with torch.inference_mode():
            try:
                self._build(read, max_seq_len)
            except BaseException as e:  # noqa: BLE001 - raised in the constructing thread
                ready.put(e)
                return
            ready.put(None)
            self._loop()

    def _loop(self) -> None:
        """Admit, prefill, decode one step, let finished requests go; until closed."""
        while True:
            with self._cv:
                while not self._pending and not self._running and not self._closed:
                    self._cv.wait()
                if self._closed and not self._pending and not self._running:
                    return
                admit = self._admissible()
            try:
                if admit:  # a prefill may take long: first hand out what the running ones have made
                    self._hand_out()
                for r in admit:
                    self._prefill(r)
                self._drop_finished()
                if self._running:
                    self._decode_step()
                    self._drop_finished()
            except Exception as e:  # noqa: BLE001 - handed to every affected caller
                for r in admit + self._running:
                    if r.finish_reason is None:
                        r.finish_reason = "error"
                        r._events.put(e)
                        r._events.put(_END, wake=True)
                for slot in range(len(self._running)):
                    self.model.cache.release(slot, 0)
                self._running = []

    def _hand_out(self) -> None:
        """Wake the readers of running requests that have events they have not been woken for."""
        for r in self._running:
            if r._events.unsent:
                r._events.wake()

    def _admissible(self) -> list[Request]:
        """Take the pending requests that fit now, in order: each needs a free slot and room in the KV
        cache budget for the most tokens it can reach; the first that does not fit waits (and those
        behind it) until running ones end. One request alone always fits (submit limits it)."""
        admit, used = [], sum(r.reserve for r in self._running)
        while self._pending and len(self._running) + len(admit) < self.max_batch:
            if used + self._pending[0].reserve > self.kv_budget_tokens:
                break
            admit.append(self._pending.popleft())
            used += admit[-1].reserve
        return admit

    def _prefill(self, r: Request) -> None:
        if r.cancelled or r.limit == 0:
            return self._finish(r, "stop" if r.cancelled else "length")
        slot = len(self._running)
        logits = self.model.prefill(torch.tensor(r.prompt), slot, embeds=self._embeds(r))
        self.stats["prefills"] += 1
        r.pos = len(r.prompt)
        self._running.append(r)
        self._accept(r, sample_batch(logits.unsqueeze(0), [r.sampler])[0])

    def _embeds(self, r: Request) -> tuple[torch.Tensor, torch.Tensor] | None:
        """A request's input embeddings, checked against its prompt and the model's width."""
        if r.embeds is None:
            return None
        pos, vec = r.embeds()
        pos = torch.as_tensor(pos, dtype=torch.long)
        inside = len(pos) == 0 or (int(pos.min()) >= 0 and int(pos.max()) < len(r.prompt))
        if not inside or vec.shape != (len(pos), self.model.config.dim):
            raise LmstackError(f"input embeddings of shape {tuple(vec.shape)} at positions outside the prompt "
                               f"or not {self.model.config.dim} wide")
        return pos, vec

    def _decode_step(self) -> None:
        run = self._running
        tokens = torch.tensor([r.token_ids[-1] for r in run])
        pos = torch.tensor([r.pos for r in run])
        if self.on_step is not None:  # a hook that may wait on what readers have seen
            self._hand_out()
            self.on_step([r.id for r in run])
        decode = self._decode_one if len(run) == 1 else self._decode_many
        logits = decode(tokens, pos, max(r.pos for r in run) + 1)
        self.stats["decode_steps"] += 1
        for r, t in zip(run, sample_batch(logits, [r.sampler for r in run]), strict=True):
            r.pos += 1
            self._accept(r, t)

    def _accept(self, r: Request, token: int) -> None:
        """Record a sampled token; finish the request on a stop token, a stop string or its limit."""
        if r.cancelled:
            return self._finish(r, "stop")
        if token in r.stop_ids:
            return self._finish(r, "stop")
        r.token_ids.append(token)
        r.sampler.observe(token)
        self.stats["tokens"] += 1
        text, hit = r.stream.push(token)
        r._events.put(TokenEvent(token, text, None))
        if hit:
            return self._finish(r, "stop", flush=False)
        if len(r.token_ids) >= r.limit:
            self._finish(r, "length")

    def _finish(self, r: Request, reason: str, flush: bool = True) -> None:
        r.finish_reason = reason
        r._events.put(TokenEvent(-1, r.stream.finish() if flush else "", reason))
        r._events.put(_END, wake=True)

    def _drop_finished(self) -> None:
        """Let finished and cancelled sequences go, moving the last running one into each freed slot."""
        for r in self._running:
            if r.finish_reason is None and r.cancelled:
                self._finish(r, "stop")
        b = 0
        while b < len(self._running):
            if self._running[b].finish_reason is None:
                b += 1
                continue
            last = self._running.pop()
            free = len(self._running)  # the slot `last` was in
            if b < free and last.finish_reason is None:  # a finished `last` is not moved, only let go
                self.model.move_slot(free, b, last.pos)
                self._running[b] = last
            self.model.cache.release(free, 0)  # that slot's memory goes back to the OS
