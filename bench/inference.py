"""Inference speed on one real model: our engine (fp32, int8, int4), the numpy run file, HF
transformers and llama.cpp (the `xllamacpp` wheel), all measured in one run, as ratios to llama.cpp.

    python bench/inference.py                       # SmolLM2-135M-Instruct (Q4_1 GGUF), 2 threads
    python bench/inference.py --model qwen2.5-coder-0.5b-instruct   # Qwen2.5-Coder-0.5B (Q4_K_M), 4x larger
    python bench/inference.py --repeats 5 --backends llama.cpp,engine-int4
    python bench/inference.py --profile engine-int4-compile   # where an engine's decode time goes
    python bench/inference.py --quality                       # what int8 / int4 cost in agreement with fp32

Each backend lives in its own worker process (so each has its own peak memory), all loaded once,
then measured in interleaved rounds: round r runs every backend back to back, so a busy spell on
the machine hits them all alike. Reported figures are medians over rounds.
- decode: greedy, 128 new tokens after a 32-token prompt, batch 1, end of sequence ignored. For the
  engine, the whole API call (see below); for llama.cpp its own decode-only timer; for the run file
  from the first new token to the last; for transformers the call minus a 1-token call.
- prefill: a 512-token prompt, tokens/s up to the first new token.
- weights: bytes of weights the backend holds in memory; peak RSS: the worker's maximum resident
  memory (interpreter and libraries included).
All backends get the same token ids; the first greedy tokens are printed so agreement is visible.

The engine is timed as a user of its API gets it: decode tokens/s is 128 over the wall time of one
whole `Engine.generate()` call (handing the request to the engine thread, the prefill of the prompt,
the first token, every step, handing the result back), against llama.cpp's own decode-only timer,
which leaves its prefill out (its wall time is printed too). `--start` adds the time to the first
token of fresh processes: eager, `--compile` cold (empty compile cache) and warm, `compile="auto"`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

BACKENDS = ["llama.cpp", "engine-fp32", "engine-int8", "engine-int4", "run-file", "transformers"]
TEXT = ("The history of the Roman Empire is long and complicated. It began with a small city on the Tiber "
        "river, grew into a republic governed by elected magistrates and a senate, and became an empire "
        "that stretched from Britain to Egypt. ")


# ---- workers: one backend each; they answer "run" with one JSON line --------------------------------
class Backend:
    """By default a backend streams tokens: `_timed` gives (time of each new token, the tokens)."""
    weight_bytes = 0

    def _timed(self, ids: list[int], n: int) -> tuple[list[float], list[int]]:
        raise NotImplementedError

    def decode(self, ids: list[int], n: int) -> tuple[float, list[int]]:
        stamps, toks = self._timed(ids, n)
        return (len(stamps) - 1) / (stamps[-1] - stamps[0]), toks

    def prefill(self, ids: list[int]) -> float:
        t = time.perf_counter()
        stamps, _ = self._timed(ids, 1)
        return len(ids) / (stamps[0] - t)


class EngineBackend(Backend):
    def __init__(self, path: str, quant: str, threads: int, compile: bool):
        from lmstack.engine import Engine, SamplingParams

        self.engine = Engine.load(path, quant=quant, threads=threads, max_batch=1, max_seq_len=1024, compile=compile)
        self.weight_bytes = self.engine.model.weight_bytes()
        self.params = lambda n: SamplingParams(max_new_tokens=n, temperature=0, stop_token_ids=[])

    def decode(self, ids, n):
        """As a user of the API gets it: the wall time of one whole Engine.generate() call (handing the
        request to the engine thread, prefill, first token, every step, handing the result back)."""
        t = time.perf_counter()
        toks = self.engine.generate([ids], self.params(n))[0].token_ids
        return len(toks) / (time.perf_counter() - t), toks

    def _timed(self, ids, n):
        stamps, toks = [], []
        for ev in self.engine.submit(ids, self.params(n)):
            if ev.token_id >= 0:
                stamps.append(time.perf_counter())
                toks.append(ev.token_id)
        return stamps, toks


class RunFileBackend(Backend):
    def __init__(self, path: str, threads: int, compile: bool):
        from lmstack import run as runfile

        self.rf = runfile
        self.model = runfile.load(path)
        arrays = [self.model.tok_embd] + [a for w in self.model.layers for a in w.values()]
        if self.model.w_out is not self.model.tok_embd:
            arrays.append(self.model.w_out)
        self.weight_bytes = sum(a.nbytes for a in arrays)

    def _timed(self, ids, n):
        stamps, toks = [], []
        for t in self.rf.generate(self.model, ids, n, temperature=0.0, stop_ids=set()):
            stamps.append(time.perf_counter())
            toks.append(t)
        return stamps, toks


class TransformersBackend(Backend):
    def __init__(self, path: str, threads: int, compile: bool):
        import torch
        from transformers import AutoModelForCausalLM

        torch.set_num_threads(threads)
        self.torch = torch
        p = Path(path)
        self.model = AutoModelForCausalLM.from_pretrained(str(p.parent), gguf_file=p.name, torch_dtype=torch.float32)
        self.model.eval()
        self.weight_bytes = sum(t.numel() * t.element_size() for t in self.model.state_dict().values())

    def _generate(self, ids, n):
        with self.torch.inference_mode():
            out = self.model.generate(self.torch.tensor([ids]), max_new_tokens=n, min_new_tokens=n, do_sample=False,
                                      pad_token_id=0)
        return out[0, len(ids):].tolist()

    def decode(self, ids, n):
        t = time.perf_counter()
        self._generate(ids, 1)
        t1 = time.perf_counter()
        toks = self._generate(ids, n)
        t2 = time.perf_counter()
        return (n - 1) / ((t2 - t1) - (t1 - t)), toks  # the same run minus its prefill and first token

    def prefill(self, ids):
        with self.torch.inference_mode():
            t = time.perf_counter()
            self.model(self.torch.tensor([ids]))
            return len(ids) / (time.perf_counter() - t)


class LlamaCppBackend(Backend):
    def __init__(self, path: str, threads: int, compile: bool):
        import xllamacpp

        p = xllamacpp.CommonParams()
        p.model.path = path
        p.n_ctx = 1024
        p.n_parallel = 1
        p.cpuparams.n_threads = threads
        p.cpuparams_batch.n_threads = threads
        self.server = xllamacpp.Server(p)
        self.weight_bytes = Path(path).stat().st_size  # the file is mapped as it is

    def _complete(self, ids, n):
        return self.server.handle_completions({"prompt": ids, "n_predict": n, "temperature": 0, "ignore_eos": True,
                                               "cache_prompt": False})

    def decode(self, ids, n):
        """llama.cpp's own decode-only timer (prefill and first token excluded): the stricter baseline;
        the wall time of the same call goes to decode_wall."""
        t = time.perf_counter()
        r = self._complete(ids, n)
        self.decode_wall = n / (time.perf_counter() - t)
        return r["timings"]["predicted_per_second"], r["choices"][0]["text"]  # text: it gives no ids

    def prefill(self, ids):
        return self._complete(ids, 1)["timings"]["prompt_per_second"]


def make_backend(name: str, path: str, threads: int) -> Backend:
    if name.startswith("engine-"):
        quant, compile = name[len("engine-"):].removesuffix("-compile"), name.endswith("-compile")
        return EngineBackend(path, "none" if quant == "fp32" else quant, threads, compile)
    cls = {"run-file": RunFileBackend, "transformers": TransformersBackend, "llama.cpp": LlamaCppBackend}[name]
    return cls(path, threads, False)


def peak_rss() -> int:
    """VmHWM: unlike getrusage's ru_maxrss it starts afresh at exec, so it is this worker's own peak."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))


def worker(a) -> None:
    t = time.perf_counter()
    b = make_backend(a.worker, a.model_path, a.threads)
    load_s = time.perf_counter() - t
    decode_ids, prefill_ids = json.loads(sys.stdin.readline())
    b.decode(decode_ids, 8)  # warm up (and, with --compile, compile)
    b.prefill(prefill_ids[:64])
    print(json.dumps({"ready": True, "load_s": load_s}), flush=True)
    for line in sys.stdin:
        if line.strip() != "run":
            break
        tps, toks = b.decode(decode_ids, a.new_tokens)
        ptps = b.prefill(prefill_ids)
        rss = peak_rss()
        print(json.dumps({"decode": tps, "decode_wall": getattr(b, "decode_wall", tps), "prefill": ptps,
                          "tokens": toks[:24] if isinstance(toks, list) else toks, "weights": b.weight_bytes,
                          "peak_rss": rss}), flush=True)


# ---- time to first token of a fresh process ---------------------------------------------------------
STARTS = [("eager", "false"), ("--compile, cold (empty compile cache)", "true"),
          ("--compile, warm (the cache the cold start wrote)", "true"), ('compile="auto", warm', "auto")]


def first_token_worker(a) -> None:
    """Load as `lmstack generate` does, then print one line when the first token of the prompt arrives."""
    from lmstack.engine import Engine, SamplingParams

    compile = {"false": False, "true": True, "auto": "auto"}[a.first_token]
    e = Engine.load(a.model_path, quant="int4", compile=compile, threads=a.threads, max_batch=1, max_seq_len=1024)
    ids = json.loads(sys.stdin.readline())
    next(iter(e.submit(ids, SamplingParams(max_new_tokens=2, temperature=0, stop_token_ids=[]))))
    print(json.dumps({"compiled": e.compiled}), flush=True)


def first_tokens(a, path: str, ids: list[int], env: dict) -> tuple[Path, list[dict]]:
    """Engine int4, each start a fresh process timed from its launch to its first token (Python's
    start and imports included, as `lmstack generate` has them). The cache directory is a fresh one
    for this run, so the cold start is cold and the warm ones have only what lmstack cached in its
    compile directory to go on. The models and lmstack's built kernels are the machine's own (a
    kernel build happens once per machine, like an install, not once per start)."""
    import tempfile

    from lmstack.engine import kernels
    from lmstack.io.packages import cache_dir

    kernels.available()  # built now where the engine will use them, so no start pays for it
    root = Path(tempfile.mkdtemp(prefix="lmstack-bench-start-"))
    for shared in ("models", "kernels"):
        if (cache_dir() / shared).exists():
            (root / shared).symlink_to(cache_dir() / shared)
    out = []
    for label, mode in STARTS:
        run_env = {k: v for k, v in env.items() if k != "TORCHINDUCTOR_CACHE_DIR"} | {"LMSTACK_CACHE": str(root)}
        t = time.perf_counter()
        w = subprocess.Popen([sys.executable, __file__, "--first-token", mode, "--model-path", path, "--threads",
                              str(a.threads)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True, env=run_env)
        line, _ = w.communicate(json.dumps(ids) + "\n")
        seconds = time.perf_counter() - t
        if not line:
            raise SystemExit(f"{label}: the start failed (run it alone to see why)")
        out.append({"start": label, "seconds": seconds, **json.loads(line.splitlines()[0])})
        print(f"{label:<50}{seconds:8.1f} s to the first token (compiled: {out[-1]['compiled']})", file=sys.stderr)
    return root, out


# ---- where the time goes ---------------------------------------------------------------------------
CATEGORIES = [  # (label, op names whose self time it sums)
    ("int4 matmuls (layers)", ("aten::_weight_int4pack_mm_for_cpu", "lmstack::q4_mm")),
    ("int8 matmuls", ("aten::_weight_int8pack_mm", "lmstack::q8_mm")),
    ("fp32 matmuls", ("aten::mm", "aten::addmm")),
    ("attention products (bmm)", ("aten::bmm",)),
    ("compiled step: its own kernels", ("compiled step",)),  # AOTInductor's code, less the ops it calls out to
]


def profile(a) -> None:
    """Decode under torch.profiler and split each token's time into categories. The model runs on
    this thread (no Engine: its scheduler thread would be invisible to the profiler)."""
    import torch
    from torch.profiler import profile as torch_profile

    from lmstack.engine.engine import compile_decode
    from lmstack.engine.forward import FastTransformer
    from lmstack.io.models import resolve_model
    from lmstack.load import load_model

    torch.set_num_threads(a.threads)
    quant = a.profile.removeprefix("engine-").removesuffix("-compile")
    model, tok, _ = load_model(resolve_model(a.model))
    fm = FastTransformer(model, "none" if quant == "fp32" else quant, 1, 1024)
    decode = fm.decode
    if a.profile.endswith("-compile"):  # the profiler sees the package's generated code only as this span
        compiled = compile_decode(fm, 1)[0]

        def decode(*args):
            with torch.profiler.record_function("compiled step"):
                return compiled(*args)
    ids, n = tok.encode(TEXT * 4)[: a.prompt_tokens], a.new_tokens

    def decode_loop():
        tok = int(fm.prefill(torch.tensor(ids), 0).argmax())
        for i in range(n):
            tok = int(decode(torch.tensor([tok]), torch.tensor([len(ids) + i]), len(ids) + i + 1)[0].argmax())

    with torch.inference_mode():
        decode_loop()
        t = time.perf_counter()
        decode_loop()
        step = (time.perf_counter() - t) / n * 1e3  # (includes the prefill, spread over the tokens)
        with torch_profile() as prof:
            decode_loop()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events) / n / 1e3
    print(f"{a.profile}, {a.threads} threads, {n} tokens after {len(ids)}: {step:.2f} ms/token "
          f"({total:.2f} under the profiler)\n")
    rest = total
    for label, names in CATEGORIES:
        ms = sum(e.self_cpu_time_total for e in events if e.key.startswith(names)) / n / 1e3
        if ms:
            rest -= ms
            print(f"  {label:<30}{ms:8.2f} ms/token {ms / total:6.0%}")
    print(f"  {'other PyTorch ops':<30}{rest:8.2f} ms/token {rest / total:6.0%}")


# ---- what quantisation costs ---------------------------------------------------------------------
QUALITY_TEXT = ("The three primary colours are red, yellow and blue. Painters mix them to make every other colour.\n"
                "def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n"
                "Paris is the capital of France and Berlin the capital of Germany. In 1969 people first walked on "
                "the Moon, 384,400 km away.")


def quality(a) -> None:
    """Teacher-forced next-token agreement and KL divergence of int8 / int4 against fp32 on one text,
    including int4 with a 4-bit vocabulary matrix (what the engine avoids)."""
    import torch

    from lmstack.engine.forward import FastTransformer
    from lmstack.engine.quant import QLinear
    from lmstack.io.models import resolve_model
    from lmstack.load import load_model

    model, tok, _ = load_model(resolve_model(a.model))
    ids = torch.tensor(tok.encode(QUALITY_TEXT))
    with torch.inference_mode():
        ref = FastTransformer(model, "none", 1, 1024).prefill(ids, 0, all_logits=True).log_softmax(-1)
        variants = {q: FastTransformer(model, q, 1, 1024) for q in ("int8", "int4")}
        low = FastTransformer(model, "int4", 1, 1024)
        low.output = QLinear(model.output.weight, "int4")  # the logits' matrix at 4 bits (lookups stay int8)
        variants["int4, 4-bit vocabulary matrix"] = low
        print(f"{len(ids)} tokens of {a.model}, teacher-forced against fp32\n")
        print(f"{'weights':<32}{'top-1 agreement':>16}{'KL (nats/token)':>17}{'weights MB':>12}")
        for name, fm in variants.items():
            got = fm.prefill(ids, 0, all_logits=True).log_softmax(-1)
            agree = (got.argmax(-1) == ref.argmax(-1)).float().mean()
            kl = (ref.exp() * (ref - got)).sum(-1).mean()
            print(f"{name:<32}{agree:>16.3f}{kl:>17.4f}{fm.weight_bytes() / 1e6:>12.1f}")


# ---- the orchestrator ---------------------------------------------------------------------------
def tokenizer(path: str):
    """The model's tokenizer; from a GGUF file without reading its weights (lazy)."""
    from lmstack.load import load_model

    return load_model(path, lazy=True)[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m-instruct", help="a GGUF file or a model name "
                    "(smollm2-135m-instruct, qwen2.5-coder-0.5b-instruct)")
    ap.add_argument("--backends", default=",".join(BACKENDS))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--prompt-tokens", type=int, default=32)
    ap.add_argument("--prefill-tokens", type=int, default=512)
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--profile", metavar="BACKEND", help="instead: split an engine backend's decode time into "
                    "categories with torch.profiler (e.g. engine-int4-compile)")
    ap.add_argument("--quality", action="store_true", help="instead: int8/int4 logits against fp32")
    ap.add_argument("--start", action="store_true", help="also: time to first token of fresh processes, "
                    "engine int4 eager, --compile cold and warm, compile='auto' warm")
    ap.add_argument("--first-token", help=argparse.SUPPRESS)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--model-path", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        return worker(a)
    if a.first_token:
        return first_token_worker(a)
    if a.profile:
        return profile(a)
    if a.quality:
        return quality(a)

    from lmstack.io.models import resolve_model

    path = str(resolve_model(a.model))
    tok = tokenizer(path)
    ids = tok.encode(TEXT * 40)
    decode_ids, prefill_ids = ids[: a.prompt_tokens], ids[: a.prefill_tokens]
    names = [n for n in a.backends.split(",") if n]
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads), "OPENBLAS_NUM_THREADS": str(a.threads),
           "MKL_NUM_THREADS": str(a.threads), "TOKENIZERS_PARALLELISM": "false", "LLAMA_LOG_VERBOSITY": "1"}
    starts = []
    if a.start:
        root, starts = first_tokens(a, path, decode_ids, env)
        env["LMSTACK_CACHE"] = str(root)  # the workers below start warm from the compile the starts cached
    workers = {}
    for name in names:  # loaded one after another, so loading does not compete with measuring
        cmd = [sys.executable, __file__, "--worker", name, "--model-path", path, "--threads", str(a.threads),
               "--new-tokens", str(a.new_tokens)]
        w = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             text=True, env=env)
        w.stdin.write(json.dumps([decode_ids, prefill_ids]) + "\n")
        w.stdin.flush()
        ready = w.stdout.readline()
        if not ready:
            raise SystemExit(f"{name}: worker failed to start (run it alone with --backends {name} to see why)")
        workers[name] = w
        print(f"loaded {name} in {json.loads(ready)['load_s']:.1f} s", file=sys.stderr)
    rows = {n: [] for n in names}
    for r in range(a.repeats):
        for name, w in workers.items():
            w.stdin.write("run\n")
            w.stdin.flush()
            rows[name].append(json.loads(w.stdout.readline()))
        print(f"round {r + 1}/{a.repeats} done", file=sys.stderr)
    for w in workers.values():
        w.stdin.close()
        w.wait()

    med = {n: {k: statistics.median(x[k] for x in rs)
               for k in ("decode", "decode_wall", "prefill", "weights", "peak_rss")} for n, rs in rows.items()}
    base = med.get("llama.cpp")
    load = os.getloadavg()[0]
    print(f"\nmodel {Path(path).name}, {a.threads} threads, decode {a.new_tokens} tokens after {a.prompt_tokens}, "
          f"prefill {a.prefill_tokens}; median of {a.repeats} rounds; load average at the end {load:.1f}\n")
    print(f"{'backend':<22}{'decode tok/s':>13}{'vs llama.cpp':>13}{'prefill tok/s':>15}{'vs llama.cpp':>13}"
          f"{'weights MB':>12}{'peak RSS MB':>13}  greedy continuation")
    for n, m in med.items():
        rd = f"{m['decode'] / base['decode']:.2f}x" if base else "-"
        rp = f"{m['prefill'] / base['prefill']:.2f}x" if base else "-"
        out = rows[n][-1]["tokens"]
        text = out if isinstance(out, str) else tok.decode(out)
        print(f"{n:<22}{m['decode']:>13.1f}{rd:>13}{m['prefill']:>15.1f}{rp:>13}{m['weights'] / 1e6:>12.1f}"
              f"{m['peak_rss'] / 1e6:>13.0f}  {text[:40]!r}")
    if base:
        print(f"(llama.cpp's decode by the wall time of its call: {base['decode_wall']:.1f} tok/s; the engine's "
              f"figures are wall times of whole Engine.generate() calls)")
        for n in (n for n in med if n.startswith("engine")):
            print(f"{n} vs llama.cpp's wall time: {med[n]['decode'] / base['decode_wall']:.2f}x")
    for s in starts:
        print(f"start: {s['start']:<50}{s['seconds']:8.1f} s to the first token (compiled: {s['compiled']})")
    if "transformers" in med:
        for n in (n for n in med if n.startswith("engine")):
            print(f"{n} decode vs transformers: {med[n]['decode'] / med['transformers']['decode']:.1f}x")
    if a.json:
        Path(a.json).write_text(json.dumps({"model": Path(path).name, "threads": a.threads, "rounds": rows,
                                            "median": med, "starts": starts, "load_average": load}, indent=1))


if __name__ == "__main__":
    main()
