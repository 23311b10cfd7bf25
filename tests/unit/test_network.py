import pytest

from asyncrl.network import bearer_matches, is_loopback, secret


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_addresses_are_reachable_from_this_machine_only(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.5", "node-1.cluster"])
def test_other_addresses_and_hostnames_count_as_reachable_from_other_machines(host: str) -> None:
    assert not is_loopback(host)


def test_a_bearer_header_matches_only_its_own_token() -> None:
    assert bearer_matches("Bearer s3cret", "s3cret")
    assert bearer_matches("bearer s3cret", "s3cret")
    assert not bearer_matches("Bearer s3cre", "s3cret")
    assert not bearer_matches("Basic s3cret", "s3cret")
    assert not bearer_matches(None, "s3cret")


def test_a_configured_token_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASYNCRL_TEST_TOKEN", "from-env")
    assert secret("configured", "ASYNCRL_TEST_TOKEN") == "configured"
    assert secret(None, "ASYNCRL_TEST_TOKEN") == "from-env"


def test_an_empty_token_anywhere_is_no_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASYNCRL_TEST_TOKEN", "")
    assert secret("", "ASYNCRL_TEST_TOKEN") is None
    monkeypatch.delenv("ASYNCRL_TEST_TOKEN")
    assert secret(None, "ASYNCRL_TEST_TOKEN") is None
