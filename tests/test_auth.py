"""Credentials from the environment, and bearer tokens on a fake clock."""

from __future__ import annotations

import warnings

import jwt
import pytest

from bulk_update.auth import Credentials, TokenMinter
from bulk_update.errors import ConfigError, CredentialsError

KEY = "ak_live_7f3c9e21d4b8"
SECRET = "s3cr3t-partner-signing-key-0123456789abcdef"
CREDS = Credentials(KEY, SECRET)


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def claims(token: str, secret: str = SECRET) -> dict[str, object]:
    # verify_exp off: the fake clock is not the real time PyJWT would compare against.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyJWT's warning about short test secrets
        decoded: dict[str, object] = jwt.decode(
            token, secret, algorithms=["HS256"], options={"verify_exp": False}
        )
    return decoded


def test_token_is_hs256_with_exactly_iss_and_exp() -> None:
    clock = FakeClock(1_700_000_000.0)
    token = TokenMinter(CREDS, ttl_s=600, clock=clock).token()
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    assert claims(token) == {"iss": KEY, "exp": 1_700_000_600}
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, "another secret of enough length, 32+ bytes", algorithms=["HS256"])


def test_exp_rounds_up_so_the_token_lives_at_least_ttl() -> None:
    clock = FakeClock(1_700_000_000.4)
    minter = TokenMinter(CREDS, ttl_s=2, clock=clock)
    exp = claims(minter.token())["exp"]
    assert exp == 1_700_000_003
    assert minter.expires_at == 1_700_000_003


def test_token_is_cached_until_a_minute_before_expiry() -> None:
    clock = FakeClock(1_000_000.0)
    minter = TokenMinter(CREDS, ttl_s=600, clock=clock)
    first = minter.token()
    clock.now += 539  # 61 s left
    assert minter.token() == first
    clock.now += 2  # 59 s left: too close
    second = minter.token()
    assert second != first
    assert claims(second)["exp"] == 1_000_000 + 541 + 600


def test_a_2_second_ttl_reminted_when_under_half_a_second_remains() -> None:
    clock = FakeClock(5_000.0)
    minter = TokenMinter(CREDS, ttl_s=2, clock=clock)
    first = minter.token()
    assert claims(first)["exp"] == 5_002
    clock.now = 5_001.4  # 0.6 s left
    assert minter.token() == first
    clock.now = 5_001.6  # 0.4 s left
    second = minter.token()
    assert claims(second)["exp"] == 5_004  # ceil(5003.6)
    clock.now = 5_003.0
    assert minter.token() == second


def test_refresh_mints_a_new_token_even_when_the_cached_one_is_fresh() -> None:
    clock = FakeClock(10_000.0)
    minter = TokenMinter(CREDS, ttl_s=600, clock=clock)
    first = minter.token()
    clock.now += 5
    fresh = minter.refresh()
    assert fresh != first
    assert claims(fresh)["exp"] == 10_605
    assert minter.token() == fresh


def test_a_short_secret_signs_without_a_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        token = TokenMinter(Credentials(KEY, "short"), clock=FakeClock(0.0)).token()
    assert claims(token, "short")["iss"] == KEY


@pytest.mark.parametrize("ttl", [0, -5])
def test_a_ttl_that_is_not_positive_is_a_config_error(ttl: float) -> None:
    with pytest.raises(ConfigError, match="token_ttl_s"):
        TokenMinter(CREDS, ttl_s=ttl)


def test_repr_and_str_hide_the_secrets() -> None:
    minter = TokenMinter(CREDS, clock=FakeClock(0.0))
    token = minter.token()
    for text in (repr(CREDS), str(CREDS), f"{CREDS}", repr(minter), repr([CREDS])):
        assert SECRET not in text
        assert KEY not in text
        assert KEY[2:6] not in text
        assert token not in text
    assert repr(CREDS) == "Credentials(api_key='ak…', secret=<hidden>)"
    assert "ab" not in repr(Credentials("abc", "xyz"))  # a short key shows nothing


def test_from_env_reads_and_strips_both_values() -> None:
    creds = Credentials.from_env({"COMEET_API_KEY": f" {KEY}\n", "COMEET_SECRET": SECRET})
    assert creds == CREDS


@pytest.mark.parametrize(
    ("env", "named", "not_named"),
    [
        ({}, ["COMEET_API_KEY", "COMEET_SECRET"], []),
        ({"COMEET_SECRET": SECRET}, ["COMEET_API_KEY"], ["COMEET_SECRET"]),
        ({"COMEET_API_KEY": KEY}, ["COMEET_SECRET"], ["COMEET_API_KEY"]),
        ({"COMEET_API_KEY": KEY, "COMEET_SECRET": "  "}, ["COMEET_SECRET"], ["COMEET_API_KEY"]),
    ],
)
def test_from_env_names_what_is_missing_and_never_a_value(
    env: dict[str, str], named: list[str], not_named: list[str]
) -> None:
    with pytest.raises(CredentialsError) as caught:
        Credentials.from_env(env)
    error = caught.value
    assert error.exit_code == 2
    first_line = error.message
    for name in named:
        assert name in first_line
    for name in not_named:
        assert name not in first_line
    assert error.fix is not None and "export" in error.fix
    assert KEY not in str(error) and SECRET not in str(error)
