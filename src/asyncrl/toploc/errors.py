"""What can go wrong with TOPLOC proofs and rollouts files, each with a message that says what to do."""

from __future__ import annotations

from asyncrl.errors import UserError


class ProofFormatError(ValueError):
    """A proof is not base64 of its 4-byte header (chunk size, values per token, precision and salt) and
    2-byte coefficients; its rollout fails verification."""


class ProofSettingsError(UserError):
    """Proofs were built with another chunk size or top-k than the verifier was told to check, or the
    rollouts of one verification disagree on them."""


class ProofBuildError(ValueError):
    """A chunk cannot be encoded: no salt makes its points distinct, or its precision is not one a proof
    can record."""


class RolloutsFileError(UserError):
    """A rollouts file is missing or has malformed lines; the message lists each bad line by number."""
