"""Property tests (hypothesis): round trips, rejections, hostile cookies, twins that agree."""

import base64
import hashlib
import os
import re
import shutil
import tempfile

import orjson
import pytest
from conftest import Transaction, compiled_twin, session_files
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastsession import SerializationError, SessionStore, _ids_py, _io_py
from fastsession._holder import holder_record
from fastsession.errors import CorruptSession
from fastsession.wsgi import WSGITransaction

settings.register_profile("fastsession", deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("fastsession")

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)  # orjson's integer range, edges included
    | st.sampled_from([-(2**63), 2**63 - 1, 2**64 - 1, 0, -1])
    | st.floats(allow_nan=False, allow_infinity=False)  # large and tiny ones included
    | st.text()  # non-ASCII, but no lone surrogates (not UTF-8)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=40,
)


@pytest.fixture(scope="module")
def directory():
    path = tempfile.mkdtemp(prefix="fastsession-properties-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def store(directory, data):
    trans = Transaction()
    with SessionStore(trans, directory) as s:
        s.get_session(True).update(data)
    return trans.cookies["SID"]


def load(directory, session_id):
    with SessionStore(Transaction({"SID": session_id}), directory) as s:
        return s.get_session(False)


@given(st.dictionaries(st.text(), json_values, min_size=1, max_size=6))
def test_any_json_value_round_trips_exactly(directory, data):
    loaded = load(directory, store(directory, data))
    assert loaded == data
    assert orjson.dumps(loaded) == orjson.dumps(data)  # types too: 1 stays int, 1.0 stays float


@given(st.integers(min_value=1, max_value=250))
def test_deep_nesting_round_trips(directory, depth):
    value = "bottom"
    for _ in range(depth):
        value = [value]
    assert load(directory, store(directory, {"deep": value})) == {"deep": value}


rejected = (
    st.integers(min_value=2**64)
    | st.integers(max_value=-(2**63) - 1)
    | st.dictionaries(st.integers(), st.integers(), min_size=1, max_size=3)
    | st.builds(object)
    | st.sets(st.integers(), max_size=3)
)


@given(json_values, rejected)
def test_rejected_values_raise_and_keep_the_stored_data(directory, kept, bad):
    session_id = store(directory, {"kept": kept})
    s = SessionStore(Transaction({"SID": session_id}), directory)
    s.get_session(False)["bad"] = bad
    with pytest.raises(SerializationError, match="bad"):
        s.close()
    assert load(directory, session_id) == {"kept": kept}


@given(st.binary(max_size=300))
def test_arbitrary_cookie_bytes_never_reach_a_path_nor_raise(directory, raw):
    header = "SID=" + raw.decode("latin-1")  # how a WSGI server hands the header over
    for create in (False, True):
        with SessionStore(WSGITransaction({"HTTP_COOKIE": header}), directory) as s:
            session = s.get_session(create)
            if session is not None:
                session["seen"] = True
    for name in session_files(directory):
        assert re.fullmatch(r"([A-Za-z0-9_-]{2})/\1[A-Za-z0-9_-]{41}", name), name


# -- the twins agree ----------------------------------------------------------------


@given(st.text(max_size=60) | st.text(alphabet="ABCabc019_-=./\n\x00é", min_size=40, max_size=46))
def test_twins_agree_on_id_validation(value):
    assert compiled_twin("ids").is_valid_id(value) is _ids_py.is_valid_id(value)


ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
ids = st.text(alphabet=ID_ALPHABET, min_size=43, max_size=43)


def sha256_name(text):
    """The stored name as fastsession.names defines it, computed here with hashlib."""
    return base64.urlsafe_b64encode(hashlib.sha256(text.encode("ascii")).digest())[:43].decode("ascii")


@given(ids | st.text(alphabet=ID_ALPHABET + "=.", min_size=40, max_size=46) | st.text(alphabet="abc", max_size=80))
def test_twins_hash_every_name_to_sha256(text):
    assert compiled_twin("ids").stored_name(text) == _ids_py.stored_name(text) == sha256_name(text)


@given(ids)
def test_the_compiled_twins_rounds_both_hash_to_sha256(text):
    # The CPU's SHA instructions where it has them, and the portable rounds that run elsewhere (and under valgrind).
    module = compiled_twin("ids")
    try:
        for portable in (True, False):
            module._sha256_rounds(portable=portable)
            assert module.stored_name(text) == sha256_name(text)
            name = sha256_name(text).encode()
            assert module.session_path(b"/s/", text) == b"/s/" + name[:2] + b"/" + name
    finally:
        module._sha256_rounds(portable=False)


def test_the_compiled_twin_uses_the_sha_instructions_exactly_where_the_cpu_has_them():
    with open("/proc/cpuinfo") as f:
        flags = {flag for line in f if line.startswith("flags") for flag in line.split(":", 1)[1].split()}
    has = {"sha_ni", "ssse3", "sse4_1"} <= flags
    assert compiled_twin("ids")._sha256_rounds() == ("sha-ni" if has else "portable")


@given(ids | st.text(max_size=60), st.binary(max_size=40))
def test_twins_build_the_same_session_path_and_refuse_the_same_keys(key, directory):
    got = compiled_twin("ids").session_path(directory, key)
    assert got == _ids_py.session_path(directory, key)
    if _ids_py.is_valid_id(key):
        name = sha256_name(key).encode()
        assert got == directory + name[:2] + b"/" + name
    else:
        assert got is None  # no path is ever made of what is not an id


def read_with(module, path):
    try:
        return "ok", module.read_session(path, False)[:2]
    except CorruptSession as exc:
        return "corrupt", str(exc)


@given(
    st.binary(max_size=20_000)
    | st.builds(lambda b: holder_record() + b, st.binary(max_size=200))
    | st.builds(lambda v: holder_record() + orjson.dumps(v), json_values)
)
def test_twins_read_any_bytes_alike(directory, content):
    path = os.path.join(directory, "differential").encode()
    with open(path, "wb") as f:
        f.write(content)
    assert read_with(compiled_twin("io"), path) == read_with(_io_py, path)


@given(st.dictionaries(st.text(), json_values, max_size=4))
def test_twins_write_identical_files(directory, data):
    body = orjson.dumps(data)
    written = []
    for module in (compiled_twin("io"), _io_py):
        path = os.path.join(directory, f"written-{module.__name__}").encode()
        module.write_unlocked(path + b".tmp", path, holder_record(), body, False)
        with open(path, "rb") as f:
            written.append(f.read())
    assert written[0] == written[1] == holder_record() + body
