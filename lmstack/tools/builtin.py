"""The built-in tools by name, as `--tools calculator,python,search --docs FOLDER` asks for them."""

from __future__ import annotations

from pathlib import Path

from lmstack.errors import LmstackError
from lmstack.tools import Tool

BUILTIN = ("calculator", "python", "search")


def builtin_tools(names: str | list[str], docs: str | Path | None = None) -> list[Tool]:
    """The named tools, in order. `search` needs `docs`: a folder of .txt/.md/.pdf or a corpus name."""
    wanted = [n.strip() for n in (names.split(",") if isinstance(names, str) else names) if n.strip()]
    unknown = [n for n in wanted if n not in BUILTIN]
    if unknown:
        raise LmstackError(f"unknown tool {unknown[0]!r}; the built-in tools are {', '.join(BUILTIN)}")
    if len(set(wanted)) != len(wanted):
        raise LmstackError("each tool may be named once in --tools")
    tools = []
    for name in wanted:
        if name == "calculator":
            from lmstack.tools.calculator import calculator_tool

            tools.append(calculator_tool())
        elif name == "python":
            from lmstack.tools.sandbox import python_tool

            tools.append(python_tool())
        else:
            if docs is None:
                raise LmstackError("the search tool needs --docs: a folder of .txt/.md/.pdf files or 'shakespeare'")
            from lmstack.tools.search import search_tool

            tools.append(search_tool(docs))
    if docs is not None and "search" not in wanted:
        raise LmstackError("--docs is only used by the search tool: add search to --tools")
    return tools
