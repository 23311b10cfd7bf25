from __future__ import annotations

import pytest

from asyncrl.envs.tool_env import tool_schema


def search(query: str, limit: int = 5, exact: bool = False) -> list:
    """Search the notes.

    More detail that is not part of the description.

    Args:
        query: words to look for
        limit (int): most results
    """
    return []


def test_schema_from_signature_and_docstring():
    schema = tool_schema(search)
    function = schema["function"]
    assert schema["type"] == "function" and function["name"] == "search"
    assert function["description"] == "Search the notes."
    assert function["parameters"]["required"] == ["query"]
    assert function["parameters"]["properties"] == {
        "query": {"type": "string", "description": "words to look for"},
        "limit": {"type": "integer", "description": "most results"},
        "exact": {"type": "boolean"},
    }


def test_untyped_or_unsupported_parameters_are_refused():
    def untyped(x):
        return x

    def odd(x: complex) -> None:
        return None

    with pytest.raises(TypeError, match="annotation"):
        tool_schema(untyped)
    with pytest.raises(TypeError, match="int, float"):
        tool_schema(odd)
