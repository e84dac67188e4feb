import pytest

from lmstack.io.tool_specs import ToolSpecError, check_tools

GOOD = {"type": "function", "function": {"name": "get_weather", "description": "Weather now.",
                                         "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                        "required": ["city"]}}}


def test_good_tools_are_normalised():
    assert check_tools([GOOD]) == [GOOD]
    bare = check_tools([{"name": "ping"}])
    assert bare == [{"type": "function", "function": {"name": "ping", "parameters": {"type": "object",
                                                                                      "properties": {}}}}]


@pytest.mark.parametrize("tools, where", [
    ("nope", "tools"),
    ([1], "tools.0"),
    ([{"type": "retrieval"}], "tools.0.type"),
    ([{"type": "function", "function": {"name": "has space"}}], "tools.0.function.name"),
    ([{"type": "function", "function": {"name": "x" * 65}}], "tools.0.function.name"),
    ([{"type": "function", "function": {}}], "tools.0.function.name"),
    ([GOOD, GOOD], "tools.1.function.name"),
    ([{"type": "function", "function": {"name": "f", "parameters": {"type": "string"}}}],
     "tools.0.function.parameters"),
    ([{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "required": "city"}}}],
     "tools.0.function.parameters"),
    ([{"type": "function", "function": {"name": "f", "description": 3}}], "tools.0.function.description"),
    ([{"name": f"f{i}"} for i in range(200)], "tools"),
])
def test_bad_tools_name_the_field(tools, where):
    with pytest.raises(ToolSpecError) as e:
        check_tools(tools)
    assert e.value.where == where
