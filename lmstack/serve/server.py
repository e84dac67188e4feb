"""`lmstack serve`: load the engines, name the models, run uvicorn."""

from __future__ import annotations

from pathlib import Path

from lmstack.errors import LmstackError
from lmstack.serve.app import ModelEntry, create_app


def model_name(spec: str) -> tuple[str, str]:
    """"alias=path" or a path/name: the public model id is the alias, a run's directory name, a file's stem."""
    if "=" in spec and not Path(spec).exists():
        name, path = spec.split("=", 1)
        if not name or not path:
            raise LmstackError(f"--model {spec!r}: expected NAME=PATH or PATH")
        return name, path
    p = Path(spec)
    return (p.resolve().name if p.is_dir() else p.stem if p.suffix == ".gguf" else spec), spec


def load_entries(specs: list[str], quant: str = "none", threads: int | None = None,
                 max_batch: int = 32) -> list[ModelEntry]:
    from lmstack.engine import Engine

    entries, seen = [], set()
    for spec in specs:
        name, path = model_name(spec)
        if name in seen:
            raise LmstackError(f"two models are called {name!r}: name them with NAME=PATH")
        seen.add(name)
        entries.append(ModelEntry(name, Engine.load(path, quant=quant, threads=threads, max_batch=max_batch), path))
    return entries


def serve(specs: list[str], host: str = "127.0.0.1", port: int = 8000, quant: str = "none",
          threads: int | None = None, max_batch: int = 32) -> None:
    import uvicorn

    entries = load_entries(specs, quant, threads, max_batch)
    app = create_app(entries)
    names = ", ".join(e.name for e in entries)
    print(f"serving {names} at http://{host}:{port}/  (API: http://{host}:{port}/v1)")
    uvicorn.run(app, host=host, port=port, log_level="warning")
