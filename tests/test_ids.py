import base64
import os
import re

import pytest

ID = re.compile(r"[A-Za-z0-9_-]{43}")


def test_new_id_is_43_chars_of_base64url(kernels):
    for _ in range(300):
        session_id = kernels.ids.new_session_id()
        assert ID.fullmatch(session_id)


def test_new_id_encodes_32_bytes_canonically(kernels):
    for _ in range(300):
        session_id = kernels.ids.new_session_id()
        raw = base64.urlsafe_b64decode(session_id + "=")
        assert len(raw) == 32
        assert base64.urlsafe_b64encode(raw)[:43].decode() == session_id


def test_new_ids_do_not_repeat_across_pool_refills(kernels):
    ids = [kernels.ids.new_session_id() for _ in range(5000)]  # ~40 refills of a 4 KiB pool
    assert len(set(ids)) == len(ids)


def test_new_ids_cover_the_alphabet(kernels):
    seen = set("".join(kernels.ids.new_session_id() for _ in range(200)))
    assert seen == set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def _ids_from_child(ids_module, count):
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report the ids it makes, then leave without cleanup
        try:
            os.write(write_end, "".join(ids_module.new_session_id() for _ in range(count)).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    data = b""
    while chunk := os.read(read_end, 65536):
        data += chunk
    os.close(read_end)
    os.waitpid(pid, 0)
    text = data.decode()
    return [text[i : i + 43] for i in range(0, len(text), 43)]


def test_ids_after_fork_differ_between_parent_and_child(kernels):
    kernels.ids.new_session_id()  # the pool is filled and partly used before the fork
    child = _ids_from_child(kernels.ids, 50)
    parent = [kernels.ids.new_session_id() for _ in range(50)]
    assert len(child) == 50
    assert not set(child) & set(parent)


def test_two_children_forked_from_one_parent_get_different_ids(kernels):
    kernels.ids.new_session_id()
    first = _ids_from_child(kernels.ids, 20)
    second = _ids_from_child(kernels.ids, 20)
    assert not set(first) & set(second)


VALID = "A" * 21 + "z9_-" + "b" * 18


@pytest.mark.parametrize(
    "value",
    [
        VALID[:-1],  # 42
        VALID + "A",  # 44
        VALID[:-1] + "\n",
        VALID + "\n",
        VALID[:-1] + "=",
        VALID[:-1] + ".",
        VALID[:-1] + "/",
        "../" + VALID[3:],
        "/" + VALID[1:],
        VALID[:-1] + "\x00",
        VALID[:-1] + "é",
        VALID[:-1] + "\u0661",  # a non-ASCII digit that \w would take
        "",
        None,
        42,
        VALID.encode(),
    ],
)
def test_is_valid_id_rejects(kernels, value):
    assert kernels.ids.is_valid_id(value) is False


def test_is_valid_id_accepts_every_alphabet_character(kernels):
    assert kernels.ids.is_valid_id(VALID) is True
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for start in range(0, 64, 43):
        chunk = (alphabet[start:] + alphabet)[:43]
        assert kernels.ids.is_valid_id(chunk) is True


def test_public_new_session_id_is_a_valid_id():
    import fastsession

    assert ID.fullmatch(fastsession.new_session_id())
