"""Tool definitions in OpenAI's format, checked once where they come in (a request, a data file).

`{"type": "function", "function": {"name": ..., "description": ..., "parameters": <JSON schema>}}`:
a name of letters, digits, `_` and `-` (at most 64, as OpenAI allows), an optional description, and
parameters that are a valid JSON schema of an object. A bare `{"name": ..., "parameters": ...}` is
accepted too (templates and older clients write it so) and normalised to the full form.
"""

from __future__ import annotations

import re

import jsonschema

from lmstack.errors import LmstackError

MAX_TOOLS = 128
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class ToolSpecError(LmstackError):
    def __init__(self, message: str, where: str):
        super().__init__(message)
        self.where = where


def check_tools(tools) -> list[dict]:
    """The tools in full form, or ToolSpecError naming the first bad one (`tools.N.function.name`)."""
    if not isinstance(tools, list):
        raise ToolSpecError("'tools' must be a list of tool definitions", "tools")
    if len(tools) > MAX_TOOLS:
        raise ToolSpecError(f"at most {MAX_TOOLS} tools, got {len(tools)}", "tools")
    out, names = [], set()
    for i, t in enumerate(tools):
        where = f"tools.{i}"
        if not isinstance(t, dict):
            raise ToolSpecError("a tool must be an object", where)
        if t.get("type", "function") != "function":
            raise ToolSpecError(f"unsupported tool type {t.get('type')!r} (only 'function')", f"{where}.type")
        fn = t["function"] if "function" in t else t
        if not isinstance(fn, dict):
            raise ToolSpecError("'function' must be an object", f"{where}.function")
        where_fn = f"{where}.function" if "function" in t else where
        name = fn.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise ToolSpecError("a tool name must be 1-64 letters, digits, '_' or '-'", f"{where_fn}.name")
        if name in names:
            raise ToolSpecError(f"two tools are named {name!r}", f"{where_fn}.name")
        names.add(name)
        desc = fn.get("description", "")
        if not isinstance(desc, str):
            raise ToolSpecError("a tool description must be a string", f"{where_fn}.description")
        params = fn.get("parameters", {"type": "object", "properties": {}})
        if not isinstance(params, dict) or params.get("type", "object") != "object":
            raise ToolSpecError("parameters must be a JSON schema of type object", f"{where_fn}.parameters")
        try:
            jsonschema.validators.validator_for(params).check_schema(params)
        except jsonschema.SchemaError as e:
            raise ToolSpecError(f"parameters are not a valid JSON schema: {e.message}",
                                f"{where_fn}.parameters") from None
        full = {"name": name, "parameters": params} | ({"description": desc} if desc else {})
        out.append({"type": "function", "function": full})
    return out
