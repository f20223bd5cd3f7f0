"""Token extraction: the contract's source order, and no fall-through past a bad source."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsgate.errors import TokenError
from wsgate.security.token_source import (
    MAX_TOKEN_LENGTH,
    FoundToken,
    extract_token,
    query_token_present,
)

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"
OTHER = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJtYWxsb3J5In0.b3RoZXI"


def extract(
    *,
    auth: object = None,
    headers: dict[str, str] | None = None,
    cookies: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
    **kwargs: Any,
) -> FoundToken | None:
    return extract_token(
        auth=auth, headers=headers or {}, cookies=cookies or {}, query=query, **kwargs
    )


def assert_malformed(**kwargs: Any) -> None:
    with pytest.raises(TokenError) as info:
        extract(**kwargs)
    assert (info.value.code, info.value.message, info.value.reason) == (
        "unauthorized",
        "Invalid token",
        "malformed",
    )


# -- each source alone ------------------------------------------------------------


def test_nothing_present() -> None:
    assert extract() is None


def test_auth_payload() -> None:
    assert extract(auth={"token": JWT}) == FoundToken("auth", JWT)


def test_bearer_header() -> None:
    assert extract(headers={"authorization": f"Bearer {JWT}"}) == FoundToken("header", JWT)


@pytest.mark.parametrize("value", [f"bearer {JWT}", f"BEARER {JWT}", f"Bearer   {JWT}"])
def test_bearer_scheme_is_case_insensitive_and_spaces_are_1_star_sp(value: str) -> None:
    assert extract(headers={"authorization": value}) == FoundToken("header", JWT)


def test_cookie() -> None:
    assert extract(cookies={"access_token": JWT}) == FoundToken("cookie", JWT)


def test_custom_cookie_name() -> None:
    assert extract(cookies={"access_token": JWT}, cookie_name="sess") is None
    assert extract(cookies={"sess": JWT}, cookie_name="sess") == FoundToken("cookie", JWT)


@pytest.mark.parametrize("param", ["token", "access_token"])
def test_query_only_when_enabled(param: str) -> None:
    assert extract(query={param: JWT}) is None
    assert query_token_present({param: JWT})
    assert extract(query={param: JWT}, allow_query=True) == FoundToken("query", JWT)


def test_query_token_present() -> None:
    assert not query_token_present(None)
    assert not query_token_present({})
    assert not query_token_present({"EIO": "4", "transport": "polling"})
    assert query_token_present({"access_token": ""})


# -- order and no fall-through ----------------------------------------------------


def test_auth_beats_header_cookie_and_query() -> None:
    found = extract(
        auth={"token": JWT},
        headers={"authorization": f"Bearer {OTHER}"},
        cookies={"access_token": OTHER},
        query={"token": OTHER},
        allow_query=True,
    )
    assert found == FoundToken("auth", JWT)


def test_header_beats_cookie_and_query() -> None:
    found = extract(
        headers={"authorization": f"Bearer {JWT}"},
        cookies={"access_token": OTHER},
        query={"token": OTHER},
        allow_query=True,
    )
    assert found == FoundToken("header", JWT)


def test_cookie_beats_query() -> None:
    found = extract(cookies={"access_token": JWT}, query={"token": OTHER}, allow_query=True)
    assert found == FoundToken("cookie", JWT)


def test_token_param_beats_access_token_param() -> None:
    found = extract(query={"access_token": OTHER, "token": JWT}, allow_query=True)
    assert found == FoundToken("query", JWT)


@pytest.mark.parametrize("auth", [None, {}, {"other": "x"}])
def test_auth_without_token_is_absent(auth: object) -> None:
    assert extract(auth=auth, cookies={"access_token": JWT}) == FoundToken("cookie", JWT)


@pytest.mark.parametrize(
    "auth",
    [
        {"token": 123},
        {"token": None},
        {"token": ""},
        {"token": ["a"]},
        {"token": {"token": JWT}},
        {"token": f"{JWT} "},
        {"token": f"Bearer {JWT}"},
        {"token": f"{JWT}\n"},
        {"token": "a" * (MAX_TOKEN_LENGTH + 1)},
        {"token": "\u0430bc"},  # Cyrillic a
        JWT,  # a bare string instead of an object
        [JWT],
        123,
        True,
    ],
)
def test_malformed_auth_never_falls_through(auth: object) -> None:
    assert_malformed(
        auth=auth,
        headers={"authorization": f"Bearer {JWT}"},
        cookies={"access_token": JWT},
        query={"token": JWT},
        allow_query=True,
    )


@pytest.mark.parametrize(
    "value",
    [
        "",
        " ",
        "Bearer",
        "Bearer ",
        "Bearer  ",
        f"Basic {JWT}",
        "Basic dXNlcjpwYXNz",
        f"Token {JWT}",
        JWT,
        f"Bearer {JWT} extra",
        f"Bearer {JWT[:10]} {JWT[10:]}",
        f"Bearer\t{JWT}",
        f"Bearer {JWT}\x00",
        f"Bearer {JWT},Bearer {OTHER}",
        f"Bearer {'a' * (MAX_TOKEN_LENGTH + 1)}",
    ],
)
def test_malformed_header_never_falls_through(value: str) -> None:
    assert_malformed(
        headers={"authorization": value},
        cookies={"access_token": JWT},
        query={"token": JWT},
        allow_query=True,
    )


@pytest.mark.parametrize("value", ["", "a b", "a;b", '"quoted"', "\u00e9", "a" * 9000])
def test_malformed_cookie_never_falls_through(value: str) -> None:
    assert_malformed(cookies={"access_token": value}, query={"token": JWT}, allow_query=True)


def test_malformed_query_token() -> None:
    assert_malformed(query={"token": "a b"}, allow_query=True)


def test_longest_allowed_token() -> None:
    token = "a" * MAX_TOKEN_LENGTH
    assert extract(auth={"token": token}) == FoundToken("auth", token)


def test_padding_is_part_of_a_b64token() -> None:
    assert extract(auth={"token": "abc=="}) == FoundToken("auth", "abc==")
    assert_malformed(auth={"token": "ab=c"})
    assert_malformed(auth={"token": "=="})


def test_repr_never_shows_the_token() -> None:
    found = extract(auth={"token": JWT})
    assert found is not None
    assert JWT not in repr(found)
    assert "auth" in repr(found)


# -- properties -------------------------------------------------------------------

_anything = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=6,
)


def _first_present(
    auth: object, headers: dict[str, str], cookies: dict[str, str], query: dict[str, str]
) -> str | None:
    """The contract's order, restated independently of the implementation."""
    if isinstance(auth, dict) and "token" in auth:
        return "auth"
    if auth is not None and not isinstance(auth, dict):
        return "auth"  # malformed: must raise
    if "authorization" in headers:
        return "header"
    if "access_token" in cookies:
        return "cookie"
    return "query" if query else None


_b64token = st.from_regex(r"[A-Za-z0-9\-._~+/]{1,40}={0,2}", fullmatch=True)
_maybe_token = st.none() | st.text(max_size=40) | _b64token


@settings(max_examples=200)
@given(
    auth=_anything | st.fixed_dictionaries({"token": _anything | _b64token}),
    authorization=_maybe_token | _b64token.map("Bearer {}".format),
    cookie=_maybe_token,
    query=_maybe_token,
)
def test_the_first_present_source_is_judged_and_only_it(
    auth: object, authorization: str | None, cookie: str | None, query: str | None
) -> None:
    headers = {} if authorization is None else {"authorization": authorization}
    cookies = {} if cookie is None else {"access_token": cookie}
    params = {} if query is None else {"token": query}
    first = _first_present(auth, headers, cookies, params)
    try:
        found = extract(auth=auth, headers=headers, cookies=cookies, query=params, allow_query=True)
    except TokenError as exc:
        assert exc.reason == "malformed"
        assert first is not None
        return
    if first is None:
        assert found is None
        return
    assert found is not None
    assert found.source == first
    assert found.token.isascii()
    assert found.token.strip() == found.token != ""
