"""The compiled decode step, and a copy of it on disk so that the second start of a model is quick.

`compile_decode` compiles the whole decode step ahead of its first call (`torch.compile(...)
.aot_compile`): Dynamo traces it once, Inductor turns the graph into C++, and the result is one
callable that takes the model as an argument and checks no guards. That callable can be written out
whole (`save_compiled_function`) and read back in a later process (`load_compiled_function`), which
then skips everything a compile does: on SmolLM2-135M a warm start used to spend 11-20 s re-tracing
the step with Dynamo even when Inductor's caches had every graph; reading the step back takes about
two seconds, most of it importing the compiler's runtime.

lmstack keeps one file per key and graph under `~/.cache/lmstack/compile/` (or
`$LMSTACK_CACHE/compile/`), beside Inductor's own cache and the C++ it built. The key holds
everything the compiled graphs depend on: the model's shape (its config, not its weights, which are
read from the model passed in on every call), the quantisation, the batch and context sizes, the
thread count, the torch version and the source of the engine's forward code. So the files existing
is a faithful "a compile of this is cached", which is what `compile="auto"` asks: compile when it
is, run eagerly when it is not (the first explicit compile fills it).

PyTorch writes compiled code with pickle. These files are lmstack's own output, in a directory only
the user can write (created 0700), trusted as the installed code is; nothing from elsewhere (a run
directory, a download) is ever read as one. A file that cannot be read is removed and compiled
afresh.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

import torch

from lmstack.engine import kernels
from lmstack.engine.forward import FastTransformer
from lmstack.io.files import atomic_write
from lmstack.io.packages import cache_dir

log = logging.getLogger(__name__)
_SOURCES = ("forward.py", "quant.py", "compiled.py", "kernels.py", "kernels.cpp")  # code that shapes the graphs
GRAPHS = ("one", "many")  # a single sequence (specialised), and any number of them


def compile_dir() -> Path:
    return cache_dir() / "compile"


def inductor_dir() -> str:
    """Where Inductor keeps its caches and the C++ it built: the user's TORCHINDUCTOR_CACHE_DIR, else
    lmstack's compile directory (not Inductor's default in /tmp, which a reboot may empty). A saved
    step names the built libraries it calls; without them a warm start rebuilds them."""
    return os.environ.get("TORCHINDUCTOR_CACHE_DIR") or str(compile_dir() / "inductor")


def cache_key(config, quant: str, max_batch: int, max_seq_len: int, threads: int) -> str:
    """A name for one compile: what its graphs depend on, hashed."""
    here = Path(__file__).parent
    parts = {"config": dataclasses.asdict(config), "quant": quant, "max_batch": max_batch,
             "max_seq_len": max_seq_len, "threads": threads, "torch": torch.__version__, "inductor": inductor_dir(),
             "kernels": quant != "none" and kernels.available(),  # (an fp32 model never builds them)
             "code": hashlib.sha256(b"".join((here / f).read_bytes() for f in _SOURCES)).hexdigest()}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


def artifacts_path(key: str, graph: str = "one") -> Path:
    return compile_dir() / f"{key}.{graph}.step"


def is_cached(key: str) -> bool:
    """The single-sequence graph is always compiled first, so its file stands for the compile."""
    return artifacts_path(key).is_file()


def load_step(key: str, graph: str = "one") -> Callable | None:
    """A step compiled and saved by an earlier process; None (and the file removed) if there is none
    or it cannot be used, so the compile just runs cold and writes a fresh one."""
    path = artifacts_path(key, graph)
    try:
        with path.open("rb") as f:
            return torch.compiler.load_compiled_function(f)
    except FileNotFoundError:
        return None
    except Exception as e:  # noqa: BLE001 - a torn or foreign file is a cache miss, not an error
        log.warning("ignoring unusable compiled step %s (%s)", path, e)
    path.unlink(missing_ok=True)
    return None


def _step(model: FastTransformer, tokens: torch.Tensor, pos: torch.Tensor, span: torch.Tensor) -> torch.Tensor:
    return model.decode_span(tokens, pos, span)


def _compile(model: FastTransformer, graph: str) -> Callable:
    """Trace and build one graph now, for an example whose sizes are left symbolic where they vary:
    the span always (compiled once for every length), the batch too for "many" (unbacked, so that no
    batch size is specialised). Only what varies is symbolic: with every size symbolic, the wrapper
    evaluated shape formulas for each operation on every call, 1 ms of 9 per token. Size asserts
    are off for the same reason. A lower threshold for storing rather than recomputing a value
    keeps the final norm out of the vocabulary product's inner loop (Inductor otherwise recomputed
    it for each of the 49152 rows: 3.8 instead of 1.2 ms). No guards are kept: the key stands for
    everything they would check, and the engine calls each graph only with the shapes it was built for."""
    b = 1 if graph == "one" else 2
    tokens, pos, span = torch.zeros(b, dtype=torch.long), torch.ones(b, dtype=torch.long), torch.arange(2)
    torch._dynamo.mark_dynamic(span, 0)
    if graph == "many":
        torch._dynamo.decorators.mark_unbacked(tokens, 0)
        torch._dynamo.decorators.mark_unbacked(pos, 0)
    opts = {"guard_filter_fn": torch.compiler.skip_all_guards_unsafe, "size_asserts": False,
            "realize_cpu_opcount_threshold": 4}
    with torch.inference_mode(False), torch.no_grad():  # tracing refuses inference-mode tensors
        return torch.compile(_step, fullgraph=True, options=opts).aot_compile(((model, tokens, pos, span), {}))


def compile_decode(model: FastTransformer, max_batch: int, key: str | None = None) -> tuple[Callable, Callable]:
    """Compile the whole decode step, now, into one graph per batch shape. With a `key`, a step saved
    under it is read back instead, and one that was compiled is saved. Returns (decode_one,
    decode_many), each called as decode(tokens (B,), pos (B,), length).

    The whole step rather than one layer, because per-call overheads are what a small model's token
    time is made of: per-layer graphs were 40% slower on SmolLM2-135M."""
    if key is not None:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = inductor_dir()  # read by Inductor whenever it looks
        compile_dir().mkdir(mode=0o700, parents=True, exist_ok=True)
    steps = {}
    for graph in GRAPHS[: 1 if max_batch == 1 else 2]:
        steps[graph] = load_step(key, graph) if key is not None else None
        if steps[graph] is None:
            steps[graph] = _compile(model, graph)
            if key is not None:
                atomic_write(artifacts_path(key, graph), type(steps[graph]).serialize(steps[graph]).serialized_data)
    one, many = steps["one"], steps.get("many", steps["one"])
    return (lambda tokens, pos, length: one(model, tokens, pos, torch.arange(length)),
            lambda tokens, pos, length: many(model, tokens, pos, torch.arange(length)))
