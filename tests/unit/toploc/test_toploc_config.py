"""Proof settings: every token commits at least one value."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from asyncrl.toploc.config import ProofConfig


def test_top_k_is_split_over_the_tokens_of_a_chunk():
    assert ProofConfig().per_position == 4
    assert ProofConfig(chunk_size=16, top_k=64).per_position == 4
    assert ProofConfig(chunk_size=100, top_k=128).per_position == 1


def test_fewer_values_than_tokens_per_chunk_is_refused():
    with pytest.raises(ValidationError, match="every token must commit at least one value"):
        ProofConfig(chunk_size=64, top_k=32)
