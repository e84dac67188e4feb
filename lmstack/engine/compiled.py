"""The compiled decode step, and a copy of it on disk so that the second start of a model is quick.

`compile_decode` exports the whole decode step (`torch.export`) and has AOTInductor build it into a
shared library, packaged with what it needs to run (`aoti_compile_and_package`), without the weights:
those and the KV cache are read from the model on every call, so one package serves every model of
the same shape. A later process opens the package with PyTorch's C++ loader and hands it the model's
tensors: no Dynamo, no Inductor, not even their Python modules are involved, so a warm start costs what
an eager one does plus a few milliseconds. (Keeping `torch.compile`'s own output on disk still left a
warm start re-tracing the step with Dynamo, 11-20 s on SmolLM2-135M; reading back an ahead-of-time
`torch.compile` needs Dynamo and Inductor imported, 4-5 s on this machine.)

lmstack keeps one package per key and graph under `~/.cache/lmstack/compile/` (or
`$LMSTACK_CACHE/compile/`). The key holds everything the compiled graphs depend on: the model's
shape (its config, not its weights), the quantisation, the batch and context sizes, the thread
count, the torch version and the source of the engine's forward code. So the package existing is a
faithful "a compile of this is cached", which is what `compile="auto"` asks: compile when it is,
run eagerly when it is not (the first explicit compile fills it).

A package is native code that the loader runs: these files are lmstack's own output, in a directory
only the user can write (created 0700), trusted as the installed code is; nothing from elsewhere (a
run directory, a download) is ever opened as one. Nothing in them is unpickled. A package that
cannot be opened is removed and compiled afresh.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

from lmstack.engine import kernels
from lmstack.engine.forward import FastTransformer
from lmstack.errors import LmstackError
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


def cache_key(config, quant: str, max_batch: int, max_seq_len: int, threads: int, low_rank: int = 0) -> str:
    """A name for one compile: what its graphs depend on, hashed (`low_rank`: the LoRA rank kept apart)."""
    here = Path(__file__).parent
    parts = {"config": dataclasses.asdict(config), "quant": quant, "max_batch": max_batch,
             "max_seq_len": max_seq_len, "threads": threads, "torch": torch.__version__, "inductor": inductor_dir(),
             "kernels": quant != "none" and kernels.available(),  # (an fp32 model never builds them)
             **({"low_rank": low_rank} if low_rank else {}),
             "code": hashlib.sha256(b"".join((here / f).read_bytes() for f in _SOURCES)).hexdigest()}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


def artifacts_path(key: str, graph: str = "one") -> Path:
    return compile_dir() / f"{key}.{graph}.pt2"


def is_cached(key: str) -> bool:
    """The single-sequence graph is always compiled first, so its package stands for the compile."""
    return artifacts_path(key).is_file()


class _Step(torch.nn.Module):
    """The decode step as a module of its own, the KV cache as inputs (written in place)."""

    def __init__(self, model: FastTransformer):
        super().__init__()
        self.m = model

    def forward(self, tokens, pos, span, k_cache, v_cache):
        return self.m.decode_span(tokens, pos, span, (k_cache, v_cache))


def open_step(model: FastTransformer, path: Path):
    """A compiled step bound to this model's tensors; None (and the file removed) if there is none or
    it cannot be used, so the compile just runs cold and writes a fresh one.

    PyTorch's C++ loader directly, rather than `torch._inductor.aoti_load_package`, whose module
    imports Dynamo (2.7 s here). The tensors are lent, not copied (user-managed constants): the
    model outlives the loader."""
    if not path.is_file():
        return None
    try:
        loader = torch._C._aoti.AOTIModelPackageLoader(str(path), "model", False, 1, -1)
        tensors = dict(_Step(model).named_buffers(remove_duplicate=False))  # a tied embedding has two names
        loader.load_constants({n: tensors[n] for n in loader.get_constant_fqns()}, False, True, True)
        return loader
    except Exception as e:  # noqa: BLE001 - a torn or foreign file is a cache miss, not an error
        log.warning("ignoring unusable compiled step %s (%s)", path, e)
    path.unlink(missing_ok=True)
    return None


def export_step(model: FastTransformer, graph: str) -> bytes:
    """Export and build one graph, for shapes left symbolic where they vary: the span always
    (compiled once for every length), the batch too for "many". Only what varies is symbolic: with
    every size symbolic, the wrapper evaluated shape formulas for each operation on every call, 1 ms
    of 9 per token. Size asserts are off for the same reason. A lower threshold for storing rather
    than recomputing a value keeps the final norm out of the vocabulary product's inner loop
    (Inductor otherwise recomputed it for each of the 49152 rows: 3.8 instead of 1.2 ms). The span
    stops one short of the context: a span the cache's full length would specialise the slice of
    the cache (a guard), and decoding never needs it (the last token generated is not fed back)."""
    import torch._inductor
    from torch.export import Dim

    b = 1 if graph == "one" else 2
    n = len(model.k_cache)
    example = (torch.zeros(b, dtype=torch.long), torch.ones(b, dtype=torch.long), torch.arange(2),
               list(model.k_cache), list(model.v_cache))
    batch = None if graph == "one" else {0: Dim("batch", min=2, max=model.max_batch)}
    shapes = (batch, batch, {0: Dim("length", min=2, max=model.max_seq_len - 1)}, [None] * n, [None] * n)
    with torch.inference_mode(False), torch.no_grad():  # export refuses inference-mode tensors
        program = torch.export.export(_Step(model), example, dynamic_shapes=shapes, strict=False)
        out = io.BytesIO()
        torch._inductor.aoti_compile_and_package(program, package_path=out, inductor_configs={
            "aot_inductor.package_constants_in_so": False, "size_asserts": False, "realize_cpu_opcount_threshold": 4})
    return out.getvalue()


def compile_decode(model: FastTransformer, max_batch: int, key: str | None = None) -> tuple[Callable, Callable]:
    """Compile the whole decode step, now, into one graph per batch shape: a single sequence (the
    common case, specialised) and any number of them. With a `key`, a package saved under it is
    used, and one that was built is saved. Returns (decode_one, decode_many), each called as
    decode(tokens (B,), pos (B,), length); a span the graphs were not built for runs eagerly.

    The whole step rather than one layer, because per-call overheads are what a small model's token
    time is made of: per-layer graphs were 40% slower on SmolLM2-135M."""
    if key is not None:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = inductor_dir()  # read by Inductor whenever it looks
        compile_dir().mkdir(mode=0o700, parents=True, exist_ok=True)
    steps = {}
    with tempfile.TemporaryDirectory(prefix="lmstack-step-") as scratch:  # the packages of an uncached compile
        for graph in GRAPHS[: 1 if max_batch == 1 else 2]:
            path = artifacts_path(key, graph) if key is not None else Path(scratch) / f"{graph}.pt2"
            steps[graph] = open_step(model, path)
            if steps[graph] is None:
                atomic_write(path, export_step(model, graph))
                steps[graph] = open_step(model, path)
                if steps[graph] is None:
                    raise LmstackError(f"the compiled decode step could not be loaded ({path})")
    caches = [*model.k_cache, *model.v_cache]

    def bind(step):
        def decode(tokens, pos, length):
            if not 2 <= length < model.max_seq_len:
                return model.decode(tokens, pos, length)
            return step.run([tokens, pos, torch.arange(length), *caches])[0]
        return decode
    return bind(steps["one"]), bind(steps.get("many", steps["one"]))
