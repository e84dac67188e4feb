"""The compiled decode step, and a cache of it on disk so that the second start of a model is quick.

`compile_decode` compiles the whole decode step. Most of a compile's time goes to Inductor
(lowering, generating and building C++), and PyTorch can hand everything a compile produced over as
bytes (`torch.compiler.save_cache_artifacts`) and put them back in a later process
(`load_cache_artifacts`), after which the same compile finds its graphs in Inductor's FX graph cache
and AOTAutograd's cache instead of building them; Dynamo still traces the step. lmstack keeps one
such file per key under `~/.cache/lmstack/compile/` (or `$LMSTACK_CACHE/compile/`). The key holds
everything the compiled graphs depend on: the model's shape (its config, not its weights, which are
graph inputs), the quantisation, the batch and context sizes, the thread count, the torch version
and the source of the engine's forward code. So the file existing is a faithful "a compile of this
is cached", which is what `compile="auto"` asks: compile when it is, run eagerly when it is not
(the first explicit compile fills it).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import logging
import os
import types
from collections.abc import Callable
from pathlib import Path

import torch

from lmstack.engine import kernels
from lmstack.engine.forward import FastTransformer
from lmstack.io.files import atomic_write
from lmstack.io.packages import cache_dir

log = logging.getLogger(__name__)
_SOURCES = ("forward.py", "quant.py", "compiled.py", "kernels.py", "kernels.cpp")  # code that shapes the graphs


def compile_dir() -> Path:
    return cache_dir() / "compile"


def inductor_dir() -> str:
    """Where Inductor keeps its caches and the C++ it built: the user's TORCHINDUCTOR_CACHE_DIR, else
    lmstack's compile directory (not Inductor's default in /tmp, which a reboot may empty). The
    artifacts file alone brings back the graphs but not the built C++: without it a warm start
    rebuilt every kernel (90 of 270 s on a busy machine)."""
    return os.environ.get("TORCHINDUCTOR_CACHE_DIR") or str(compile_dir() / "inductor")


def cache_key(config, quant: str, max_batch: int, max_seq_len: int, threads: int) -> str:
    """A name for one compile: what its graphs depend on, hashed."""
    here = Path(__file__).parent
    parts = {"config": dataclasses.asdict(config), "quant": quant, "max_batch": max_batch,
             "max_seq_len": max_seq_len, "threads": threads, "torch": torch.__version__, "inductor": inductor_dir(),
             "kernels": quant != "none" and kernels.available(),  # (an fp32 model never builds them)
             "code": hashlib.sha256(b"".join((here / f).read_bytes() for f in _SOURCES)).hexdigest()}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


def artifacts_path(key: str) -> Path:
    return compile_dir() / f"{key}.bin"


def is_cached(key: str) -> bool:
    return artifacts_path(key).is_file()


def load_artifacts(key: str) -> bool:
    """Put a cached compile back into PyTorch's caches; False (and the file removed) if it cannot be
    used, so the compile just runs cold and writes a fresh one."""
    path = artifacts_path(key)
    try:
        if torch.compiler.load_cache_artifacts(path.read_bytes()) is not None:  # None: it could not read them
            return True
    except FileNotFoundError:
        return False
    except Exception as e:  # noqa: BLE001 - a torn or foreign file is a cache miss, not an error
        log.warning("ignoring unusable compile cache %s (%s)", path, e)
    path.unlink(missing_ok=True)
    return False


def save_artifacts(key: str) -> None:
    """Write what this process's compiles produced (written whole or not at all: atomic)."""
    saved = torch.compiler.save_cache_artifacts()
    if saved is not None and saved[0]:
        atomic_write(artifacts_path(key), saved[0])


_COPIES = itertools.count()


def _own_copy(method):
    """The bound method with a code object of its own. Dynamo keeps the frames it compiled on the
    code object, and with the modules' guards skipped, a second engine in the same process (another
    model, another quantisation) calling the same code object would pass the remaining guards and
    run the first engine's graph on its own weights (an int8 matrix fed to a float kernel, seen in
    the test suite). `replace` always makes a new code object; the numbering is the same from one
    start to the next, so the on-disk compile cache still applies."""
    fn = method.__func__
    code = fn.__code__.replace(co_name=f"{fn.__name__}_{next(_COPIES)}")
    copy = types.FunctionType(code, fn.__globals__, code.co_name, fn.__defaults__, fn.__closure__)
    return types.MethodType(copy, method.__self__)


def compile_decode(model: FastTransformer, max_batch: int, key: str | None = None) -> tuple[Callable, Callable]:
    """Compile the whole decode step, now, into one graph per batch shape: a single sequence (the
    common case, specialised) and any number of them (batch size left symbolic). With a `key`, a
    compile cached under it is used, and one that was not is cached.

    The whole step rather than one layer, because per-call overheads are what a small model's token
    time is made of: per-layer graphs were 40% slower on SmolLM2-135M. Guards on the modules'
    attributes are skipped (they cannot change); guards on tensors stay. Only what varies is
    symbolic (the span, and the batch size of decode_many): with every size symbolic, the wrapper
    evaluated shape formulas for each operation on every call, 1 ms of 9 per token. Size asserts
    are off for the same reason. A lower threshold for storing rather than recomputing a value
    keeps the final norm out of the vocabulary product's inner loop (Inductor otherwise recomputed
    it for each of the 49152 rows: 3.8 instead of 1.2 ms). Returns (decode_one, decode_many)."""
    if key is not None:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = inductor_dir()  # read by Inductor whenever it looks
    hit = key is not None and load_artifacts(key)
    opts = {"guard_filter_fn": torch.compiler.skip_guard_on_all_nn_modules_unsafe, "size_asserts": False,
            "realize_cpu_opcount_threshold": 4}
    one = torch.compile(_own_copy(model.decode_span), options=opts)
    many = torch.compile(_own_copy(model.decode_batch), options=opts)

    def span(length: int) -> torch.Tensor:
        s = torch.arange(length)
        torch._dynamo.mark_dynamic(s, 0)  # compiled once for every length
        return s

    def decode_one(tokens, pos, length):
        return one(tokens, pos, span(length))

    def decode_many(tokens, pos, length):
        torch._dynamo.decorators.mark_unbacked(tokens, 0)  # no specialisation on the batch size
        torch._dynamo.decorators.mark_unbacked(pos, 0)
        return many(tokens, pos, span(length))

    # position 1 of the first slots (later writes overwrite it)
    decode_one(torch.tensor([0]), torch.tensor([1]), 2)
    if max_batch > 1:
        decode_many(torch.tensor([0, 0]), torch.tensor([1, 1]), 2)
    if key is not None and not hit:
        save_artifacts(key)
    return decode_one, decode_many
