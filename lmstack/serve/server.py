"""`lmstack serve`: load the engines, name the models, run uvicorn."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from lmstack.errors import LmstackError
from lmstack.serve.access_log import check_log_mode
from lmstack.serve.access_log import logger as access_logger
from lmstack.serve.app import ModelEntry, create_app
from lmstack.serve.limits import Limits, read_api_keys


def model_name(spec: str) -> tuple[str, str]:
    """"alias=path" or a path/name: the public model id is the alias, a run's directory name, a file's stem."""
    if "=" in spec and not Path(spec).exists():
        name, path = spec.split("=", 1)
        if not name or not path:
            raise LmstackError(f"--model {spec!r}: expected NAME=PATH or PATH")
        return name, path
    p = Path(spec)
    return (p.resolve().name if p.is_dir() else p.stem if p.suffix == ".gguf" else spec), spec


def load_entries(specs: list[str], quant: str = "auto", threads: int | None = None, max_batch: int = 32,
                 compile: bool | str = "auto", kv_cache_mb: float | None = None) -> list[ModelEntry]:
    """One engine per model. quant="auto" runs each file as it is stored (a Q4_1 file as int4, ...);
    compile="auto" compiles the decode step when that compile is cached on disk."""
    from lmstack.engine import Engine
    from lmstack.engine.engine import KV_CACHE_MB
    from lmstack.vision.serving import is_vision_model, open_vision

    entries, seen = [], set()
    for spec in specs:
        name, path = model_name(spec)
        if name in seen:
            raise LmstackError(f"two models are called {name!r}: name them with NAME=PATH")
        seen.add(name)
        kw = dict(quant=quant, compile=compile, threads=threads, max_batch=max_batch,
                  kv_cache_mb=kv_cache_mb or KV_CACHE_MB)
        if is_vision_model(path):  # a vision run, or model.gguf with its mmproj.gguf beside it
            vision = open_vision(path, **kw)
            entries.append(ModelEntry(name, vision.engine, path, vision=vision))
        else:
            entries.append(ModelEntry(name, Engine.load(path, **kw), path))
    return entries


def serve(specs: list[str], host: str = "127.0.0.1", port: int = 8000, quant: str = "auto",
          threads: int | None = None, max_batch: int = 32, compile: bool | str = "auto",
          kv_cache_mb: float | None = None, tools: str | None = None, docs: str | None = None,
          api_key_file: str | None = None, limits: Limits | None = None, guard: bool | str = False,
          log: str = "requests") -> None:
    """Load the models and the tools, then serve until stopped. Everything a flag names is checked
    (and the documents indexed) before the first model is loaded."""
    import uvicorn

    from lmstack.tools.builtin import builtin_tools

    limits = limits or Limits()
    if api_key_file:
        limits = replace(limits, api_keys=read_api_keys(api_key_file))
    limits.check()
    check_log_mode(log)
    toolset = builtin_tools(tools or [], docs)
    screen = None
    if guard:  # True or "ngrams": the default guard; "smollm2": the head on SmolLM2's hidden states
        from lmstack.security.guard import Guard, GuardConfig

        screen = Guard.load(GuardConfig.named("ngrams" if guard is True else guard), quiet=False)
    entries = load_entries(specs, quant, threads, max_batch, compile, kv_cache_mb)
    app = create_app(entries, tools=toolset, limits=limits, guard=screen, log=log)
    names = ", ".join(f"{e.name} ({e.engine.quant}{', compiled' if e.engine.compiled else ''})" for e in entries)
    print(f"serving {names} at http://{host}:{port}/  (API: http://{host}:{port}/v1)")
    if toolset:
        print(f"tools: {', '.join(t.name for t in toolset)}")
    if screen:
        print(f"guard: user input and tool results screened (threshold {screen.threshold:.3f}, "
              f"{screen.cfg.target_fpr:.0%} of held-out benign text flagged)")
    if not limits.api_keys and host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: serving on {host} without API keys: anyone who can reach this address can use the "
              "models and their tools (give --api-key-file)")
    if log != "off":
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        access_logger.addHandler(handler)
        access_logger.setLevel(logging.INFO)
        print(f"log: one line per request{' with its request and response bodies' if log == 'contents' else ''} "
              "on stderr")
    uvicorn.run(app, host=host, port=port, log_level="warning")
