"""What can go wrong with TOPLOC proofs and rollouts files, each with a message that says what to do."""

from __future__ import annotations

from asyncrl.errors import UserError


class ProofFormatError(ValueError):
    """A proof is not base64 of a 2-byte chunk size, a 2-byte modulus and 2-byte coefficients; its rollout
    fails verification."""


class ProofSettingsError(UserError):
    """Proofs were built with another chunk size or top-k than the verifier was told to check, or the
    rollouts of one verification disagree on them."""


class ProofBuildError(ValueError):
    """A chunk's top-k cannot be encoded (no modulus keeps its indices distinct)."""


class RolloutsFileError(UserError):
    """A rollouts file is missing or has malformed lines; the message lists each bad line by number."""
