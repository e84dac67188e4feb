"""Imports point down the layers of docs/ARCHITECTURE.md, and no module reaches into another's privates.

Every module under lmstack/ is parsed (nothing is imported), and every `lmstack.*` import in it, at the
top or inside a function, must name a module of its own layer or of a layer below. Within a layer
modules may import each other (speedrun runs pretrain and sft). The run file imports nothing from
lmstack at all.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "lmstack"

# Top to bottom; a module belongs to the layer of the longest prefix that names it.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("cli", ("lmstack.cli", "lmstack.__main__")),
    ("serve", ("lmstack.serve",)),
    ("capabilities and commands", ("lmstack.scaling", "lmstack.tools", "lmstack.vision", "lmstack.security",
                                   "lmstack.pretrain", "lmstack.sft", "lmstack.speedrun", "lmstack.evaluate",
                                   "lmstack.chat_cli", "lmstack.chat_eval")),
    ("train", ("lmstack.train",)),
    ("engine", ("lmstack.engine",)),
    ("load", ("lmstack.load",)),
    ("model", ("lmstack.model",)),
    ("io", ("lmstack.io",)),
    ("errors and checks", ("lmstack.errors", "lmstack.checks")),
    ("package", ("lmstack",)),  # lmstack/__init__.py
]
# io reads and writes the model's hyperparameters (GGUF metadata, HF config.json), so it may know the
# config dataclass, and nothing else of the model
ALLOWED_UP = {("io", "lmstack.model"): {"ModelConfig"}}
STANDALONE = {"lmstack.run"}  # imports nothing from lmstack; anyone may import it


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer_of(module: str) -> int:
    matches = [(len(prefix), rank) for rank, (_, prefixes) in enumerate(LAYERS) for prefix in prefixes
               if module == prefix or module.startswith(prefix + ".")]
    if not matches:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS in tests/test_layers.py")
    return max(matches)[1]


def imports(module: str) -> list[tuple[int, str, list[str]]]:
    """(line, imported module, names taken from it) for every lmstack import of a module, nested ones too.
    `from pkg import sub` where sub is a module counts as importing pkg.sub."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name, []) for a in node.names if a.name.split(".")[0] == "lmstack"]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            if base.split(".")[0] != "lmstack":
                continue
            for a in node.names:
                sub = f"{base}.{a.name}"
                out.append((node.lineno, sub, []) if sub in MODULES else (node.lineno, base, [a.name]))
    return out


def private_uses(module: str) -> list[tuple[int, str]]:
    """Private names (`_x`, not dunders) of another lmstack module, imported or read as an attribute."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    found = [(line, f"{target}.{n}") for line, target, names in imports(module) if target != module
             for n in names if n.startswith("_") and not n.startswith("__")]
    aliases = {}  # local name -> lmstack module it is bound to
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            aliases.update({a.asname: a.name for a in node.names if a.asname and a.name in MODULES})
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            aliases.update({a.asname or a.name: f"{node.module}.{a.name}" for a in node.names
                            if f"{node.module}.{a.name}" in MODULES})
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                and node.attr.startswith("_") and not node.attr.startswith("__")
                and aliases[node.value.id] != module):
            found.append((node.lineno, f"{aliases[node.value.id]}.{node.attr}"))
    return found


def violations(module: str) -> list[str]:
    if module in STANDALONE:
        return [f"{module}:{line} imports {target}" for line, target, _ in imports(module)]
    rank, out = layer_of(module), []
    for line, target, names in imports(module):
        if target in STANDALONE or layer_of(target) >= rank:
            continue
        allowed = ALLOWED_UP.get((LAYERS[rank][0], target))
        if allowed is not None and names and set(names) <= allowed:
            continue
        what = f"{target} ({', '.join(names)})" if names else target
        out.append(f"{module}:{line} ({LAYERS[rank][0]}) imports {what} from the layer above, "
                   f"{LAYERS[layer_of(target)][0]}")
    return out


def test_every_module_has_a_layer():
    assert len(MODULES) > 40  # the walk found the package
    for module in MODULES:
        if module not in STANDALONE:
            layer_of(module)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down_the_layers(module):
    assert violations(module) == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_uses_another_modules_private_names(module):
    assert private_uses(module) == []


def test_the_checker_catches_what_it_is_for(tmp_path, monkeypatch):
    """Fake modules that break each rule: the checks must report them (so the tests above can fail)."""
    fakes = {
        "lmstack.io.bad_up": "def f():\n    from lmstack.engine import Engine\n",  # nested, one layer up
        "lmstack.io.config_ok": "from lmstack.model import ModelConfig\n",
        "lmstack.io.model_bad": "from lmstack.model import ModelConfig, Transformer\n",
        "lmstack.engine.rel_up": "from ..serve import app\n",
        "lmstack.engine.private": "from lmstack.io.tokenizer import Tokenizer, _secret\n",
        "lmstack.engine.private_attr": "from lmstack.io import tokenizer\nx = tokenizer._table\n",
        "lmstack.run2": "import lmstack.errors\n",
    }
    for name, src in fakes.items():
        path = tmp_path / (name.replace(".", "_") + ".py")
        path.write_text(src)
        monkeypatch.setitem(MODULES, name, path)
    monkeypatch.setattr(sys.modules[__name__], "STANDALONE", STANDALONE | {"lmstack.run2"})
    assert violations("lmstack.io.bad_up") == [
        "lmstack.io.bad_up:2 (io) imports lmstack.engine (Engine) from the layer above, engine"]
    assert violations("lmstack.io.config_ok") == []
    assert len(violations("lmstack.io.model_bad")) == 1
    assert violations("lmstack.engine.rel_up") == [
        "lmstack.engine.rel_up:1 (engine) imports lmstack.serve.app from the layer above, serve"]
    assert private_uses("lmstack.engine.private") == [(1, "lmstack.io.tokenizer._secret")]
    assert private_uses("lmstack.engine.private_attr") == [(2, "lmstack.io.tokenizer._table")]
    assert violations("lmstack.run2") == ["lmstack.run2:1 imports lmstack.errors"]
