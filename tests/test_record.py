"""fastsession.record, fastsession.users and fastsession.merge as units: what opens, what is logged, word for word.

The stores' tests (test_sealed, test_trust, test_users, test_commit_mode) hold the behaviour end to end;
these hold each rule and message in one place, so a change to any of them is seen.
"""

import logging
import math
import time

import orjson
import pytest

from fastsession import record, sealed
from fastsession.errors import SessionConflict
from fastsession.merge import ABSENT, merge
from fastsession.names import stored_name
from fastsession.record import META, AcceptPlainUntil, bound_to, encode_plain, opened, sealed_document, valid_meta
from fastsession.users import UserSession, bound, user_hash

SID = "S" * 43
SHORT = stored_name(SID)[:8] + "…"


def warnings_of(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


@pytest.mark.parametrize(
    "meta, valid",
    [
        ({}, True),
        ({"c": 1.5, "u": "h", "m": {"ua": "x"}, "x": "t", "later": [1]}, True),  # unknown keys: a later version's
        ({"c": 2}, True),
        ({"c": True}, False),
        ({"c": "yesterday"}, False),
        ({"c": math.nan}, False),
        ({"c": math.inf}, False),
        ({"u": 5}, False),
        ({"m": []}, False),
        ({"x": 7}, False),
        ([], False),
        ("c", False),
        (None, False),
    ],
)
def test_valid_meta_is_what_the_store_writes(meta, valid):
    assert valid_meta(meta) is valid


def test_a_plain_record_opens_as_itself_and_its_meta_comes_out():
    data = {"n": 1, META: {"c": 5.0}}
    assert opened(SID, data, False) == ({"n": 1}, {"c": 5.0}, None)
    assert opened(SID, {"n": 1}, False) == ({"n": 1}, None, None)


def test_malformed_meta_is_logged_word_for_word_and_opens_nothing(caplog):
    with caplog.at_level(logging.WARNING, logger="fastsession"):
        assert opened(SID, {"n": 1, META: "junk"}, False) is None
    assert warnings_of(caplog) == [
        f"session {SHORT} has malformed metadata (not written by fastsession): read as absent"
    ]


def test_with_encrypt_a_plain_record_is_logged_word_for_word_and_opens_nothing(caplog):
    with caplog.at_level(logging.WARNING, logger="fastsession"):
        assert opened(SID, {"n": 1}, True) is None
    assert warnings_of(caplog) == [
        f"session {SHORT} is not sealed and encrypt=True: read as absent (planted, or stored before "
        "encryption; see AcceptPlainUntil)"
    ]


def test_in_a_migration_window_a_plain_record_opens_marked_to_be_sealed():
    window = AcceptPlainUntil(time.time() + 60)
    assert opened(SID, {"n": 1, META: {"c": 3}}, window) == ({"n": 1}, {"c": 3}, b"")
    assert record.plain_accepted(window) and record.plain_accepted(False)
    assert not record.plain_accepted(True) and not record.plain_accepted(AcceptPlainUntil(time.time() - 1))
    assert bool(window) and repr(window).startswith("AcceptPlainUntil(")


def test_a_sealed_record_opens_with_its_sealed_meta_and_the_plain_encoding_to_compare():
    meta = {"c": 7.0, "u": "hash-of-ann", "m": {"ua": "Firefox"}}
    document = orjson.loads(sealed_document(SID, {"n": 1}, meta))
    assert set(document) == {META} and set(document[META]) == {"x", "u"}
    assert document[META]["u"] == "hash-of-ann"  # the copy revoke checks a binding against
    data, inner, plain = opened(SID, document, True)
    assert (data, inner) == ({"n": 1}, meta)
    assert plain == encode_plain({"n": 1}, meta) == orjson.dumps({"n": 1, META: meta})
    unbound = orjson.loads(sealed_document(SID, {"n": 1}, None))
    assert set(unbound[META]) == {"x"}
    assert opened(SID, unbound, True) == ({"n": 1}, None, b'{"n":1}')


def test_a_sealed_record_that_does_not_open_is_logged_word_for_word(caplog):
    document = orjson.loads(sealed_document(SID, {"n": 1}, None))
    with caplog.at_level(logging.WARNING, logger="fastsession"):
        assert opened("T" * 43, document, True) is None  # another id's key
    assert warnings_of(caplog) == [
        f"sealed session {stored_name('T' * 43)[:8]}… does not open (tampered, or not its record): read as absent"
    ]


def test_a_sealed_record_with_malformed_inner_meta_is_logged_and_opens_nothing(caplog):
    token = sealed.seal(SID, stored_name(SID), orjson.dumps({"n": 1, META: {"c": "never"}}))
    with caplog.at_level(logging.WARNING, logger="fastsession"):
        assert opened(SID, {META: {"x": token}}, True) is None
    assert warnings_of(caplog) == [f"sealed session {SHORT} holds malformed metadata"]


def test_a_record_sealed_by_0_2_0_opens_with_its_outer_meta_only_in_a_window(caplog):
    token = sealed.seal(SID, stored_name(SID), orjson.dumps({"n": 1}))
    document = {META: {"c": 11.0, "u": "h", "x": token}}
    with caplog.at_level(logging.WARNING, logger="fastsession"):
        assert opened(SID, dict(document), True) is None
    assert warnings_of(caplog) == [
        f"session {SHORT} was sealed by 0.2.0 (its metadata is not authenticated): read as absent "
        "(see AcceptPlainUntil)"
    ]
    data, meta, plain = opened(SID, {META: dict(document[META])}, AcceptPlainUntil(time.time() + 60))
    assert (data, meta) == ({"n": 1}, {"c": 11.0, "u": "h"})
    assert plain == orjson.dumps({"n": 1, META: {"c": 11.0, "u": "h"}})
    assert opened(SID, {META: {"x": token}}, AcceptPlainUntil(time.time() + 60))[1] is None


@pytest.mark.parametrize(
    "stored, user",
    [
        ({"n": 1}, None),
        ({META: "junk"}, None),
        ({META: {"c": 1}}, None),
        ({META: {"u": 5}}, None),
        ({META: {"u": "h"}}, "h"),
        ({META: {"x": "t", "u": "h"}}, "h"),
    ],
)
def test_bound_to_reads_the_user_a_stored_record_names(stored, user):
    assert bound_to(stored) == user


# -- users ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [5, "", None, b"ann"])
def test_a_user_id_is_a_non_empty_str(bad):
    with pytest.raises(TypeError) as caught:
        user_hash(bad)
    assert str(caught.value) == f"a user id is a non-empty str, not {bad!r}"


def test_unbinding_takes_the_user_and_its_metadata_away_and_keeps_the_creation_time():
    meta = bound(None, "ann", {"ua": "Firefox"})
    assert set(meta) == {"u", "c", "m"} and meta["m"] == {"ua": "Firefox"}
    assert bound(meta, None, None) == {"c": meta["c"]}
    assert bound(None, None, None) is None  # never bound: nothing to take, no error
    assert bound({"c": 1.0}, None, None) == {"c": 1.0}
    rebound = bound(meta, "bob", {})
    assert "m" not in rebound and rebound["u"] == user_hash("bob") and rebound["c"] == meta["c"]


def test_binding_metadata_that_cannot_be_stored_fails_at_once():
    with pytest.raises(TypeError):
        bound(None, "ann", {"ua": object()})


def test_a_user_session_lists_as_a_dict_and_compares_by_value():
    entry = UserSession("N" * 43, "U" * 43, 1.0, 2.0, {"ua": "x"})
    assert entry.as_dict() == {
        "session": "N" * 43,
        "user": "U" * 43,
        "created": 1.0,
        "last_seen": 2.0,
        "metadata": {"ua": "x"},
    }
    assert entry == UserSession("N" * 43, "U" * 43, 1.0, 2.0, {"ua": "x"})
    assert entry != UserSession("N" * 43, "U" * 43, 1.0, 3.0, {"ua": "x"})
    assert entry != entry.as_dict()
    assert repr(entry) == "UserSession(NNNNNNNN…, created=1.0, last_seen=2.0)"


# -- merge ------------------------------------------------------------------------------------------------


def test_a_conflict_names_its_keys_word_for_word():
    with pytest.raises(SessionConflict) as caught:
        merge({"a": 1, "b": 1}, {"a": 2, "b": 2}, {"a": 3, "b": 2}, "raise")
    assert caught.value.keys == ("a", "b")
    assert str(caught.value) == (
        "the session changed meanwhile: key(s) 'a', 'b' changed by this request and by another meanwhile; "
        "nothing was written"
    )


def test_a_resolver_is_given_the_key_and_each_version_and_may_delete():
    seen = []

    def resolve(key, base, ours, theirs):
        seen.append((key, base, ours, theirs))
        return ABSENT

    assert merge({"a": 1, "k": 0}, {"a": 2, "k": 0}, {"a": 3, "k": 0}, resolve) == {"k": 0}
    assert seen == [("a", 1, 2, 3)]
    assert repr(ABSENT) == "ABSENT"


def test_a_key_both_sides_deleted_resolved_as_ours_is_simply_gone():
    assert merge({"a": 1, "k": 0}, {"k": 0}, {"k": 0}, "ours") == {"k": 0}


def test_sealed_imports_cryptography_once_and_says_what_to_install_without_it(monkeypatch):
    import sys

    monkeypatch.setattr(sealed, "_crypto", None)
    sealed.require()
    assert sealed._crypto is not None and len(sealed._crypto) == 4
    monkeypatch.setattr(sealed, "_crypto", None)
    monkeypatch.setitem(sys.modules, "cryptography.hazmat.primitives.ciphers.aead", None)
    with pytest.raises(ImportError) as caught:
        sealed.require()
    assert str(caught.value) == 'encrypt=True needs the cryptography package: pip install "fastsession-store[crypto]"'
