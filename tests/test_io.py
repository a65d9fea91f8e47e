import errno
import os
import stat

import orjson
import pytest

from fastsession._holder import holder_record
from fastsession.errors import CorruptSession


@pytest.fixture
def path(tmp_path):
    return os.fsencode(tmp_path / "session")


def write_locked(kernels, path, body, fsync=False):
    fd = kernels.lock.try_lock(path + b".lock", holder_record())
    kernels.io.commit_locked(fd, path + b".lock", path, body, fsync)


def test_missing_session_reads_as_none(kernels, path):
    assert kernels.io.read_session(path, False) is None
    assert kernels.io.read_session(path, True) is None


def test_commit_renames_the_lockfile_over_the_session(kernels, path):
    write_locked(kernels, path, b'{"a":1}')
    assert not os.path.exists(path + b".lock")
    with open(path, "rb") as f:
        assert f.read() == holder_record() + b'{"a":1}'
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_read_returns_data_stored_bytes_and_mtime_when_asked(kernels, path):
    write_locked(kernels, path, b'{"a":[1,"\xc3\xa9"]}')
    data, body, mtime = kernels.io.read_session(path, True)
    assert data == {"a": [1, "é"]}
    assert body == b'{"a":[1,"\xc3\xa9"]}'
    assert mtime == pytest.approx(os.stat(path).st_mtime, abs=1e-3)
    assert kernels.io.read_session(path, False)[2] == 0.0


def test_large_session_is_read_whole(kernels, path):
    data = {f"k{i}": "x" * 100 for i in range(2000)}  # ~220 KB, past one read
    body = orjson.dumps(data)
    write_locked(kernels, path, body)
    assert kernels.io.read_session(path, False)[:2] == (data, body)


def test_session_of_exactly_one_read_buffer(kernels, path):
    # The compiled twin reads 16384 bytes at once: a file of that size exactly must still be whole.
    header = len(holder_record())
    filler = 16384 - header - len(b'{"k":""}')
    body = orjson.dumps({"k": "y" * filler})
    write_locked(kernels, path, body)
    assert os.path.getsize(path) == 16384
    assert kernels.io.read_session(path, False)[1] == body


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b'{"a":1',  # no holder line, and not JSON either
        b"FSv1 x y 1 1",  # holder line cut short
        b"junk line\n{}",
        holder_record() + b'{"a":',  # truncated JSON
        holder_record() + b"[1,2]",  # not an object
        holder_record() + b"\xff\xfe",
    ],
)
def test_corrupt_file_raises_corrupt_session(kernels, path, content):
    with open(path, "wb") as f:
        f.write(content)
    with pytest.raises(CorruptSession):
        kernels.io.read_session(path, False)


def test_plain_json_object_without_holder_line_reads(kernels, path):
    with open(path, "wb") as f:
        f.write(b'{"from":"another tool"}')
    assert kernels.io.read_session(path, False)[:2] == ({"from": "another tool"}, b'{"from":"another tool"}')


def test_corrupt_session_is_a_value_error_naming_the_file(kernels, path):
    with open(path, "wb") as f:
        f.write(b"junk")
    with pytest.raises(ValueError, match="session"):
        kernels.io.read_session(path, False)


def test_symlinked_session_file_is_not_followed(kernels, path, tmp_path):
    target = tmp_path / "elsewhere"
    target.write_bytes(holder_record() + b'{"secret":1}')
    os.symlink(target, path)
    with pytest.raises(CorruptSession, match="symbolic link"):
        kernels.io.read_session(path, False)


def test_failed_commit_keeps_the_session_and_releases_the_lock(kernels, path, tmp_path):
    write_locked(kernels, path, b'{"v":1}')
    # The rename cannot replace a directory: a real commit failure after the write.
    blocked = os.fsencode(tmp_path / "blocked")
    os.mkdir(blocked)
    fd = kernels.lock.try_lock(blocked + b".lock", holder_record())
    with pytest.raises(OSError) as info:
        kernels.io.commit_locked(fd, blocked + b".lock", blocked, b'{"v":2}', False)
    assert info.value.errno in (errno.EISDIR, errno.ENOTEMPTY, errno.EEXIST)
    assert os.fsdecode(info.value.filename) == os.fsdecode(blocked + b".lock")
    assert not os.path.exists(blocked + b".lock")
    assert os.path.isdir(blocked)
    assert kernels.io.read_session(path, False)[0] == {"v": 1}


def test_write_to_a_closed_descriptor_fails_cleanly(kernels, path):
    write_locked(kernels, path, b'{"v":1}')
    fd = kernels.lock.try_lock(path + b".lock", holder_record())
    os.close(fd)  # EBADF on the write: the commit must unwind, not half-happen
    with pytest.raises(OSError) as info:
        kernels.io.commit_locked(fd, path + b".lock", path, b'{"v":2}', False)
    assert info.value.errno == errno.EBADF
    assert not os.path.exists(path + b".lock")
    assert kernels.io.read_session(path, False)[0] == {"v": 1}


def test_commit_with_fsync(kernels, path):
    write_locked(kernels, path, b'{"durable":true}', fsync=True)
    assert kernels.io.read_session(path, False)[0] == {"durable": True}


def test_unlocked_write_goes_through_a_temp_file_that_does_not_remain(kernels, path, tmp_path):
    temp = path + b".0123456789abcdef.tmp"
    kernels.io.write_unlocked(temp, path, holder_record(), b'{"u":1}', True)
    assert kernels.io.read_session(path, False)[0] == {"u": 1}
    assert sorted(os.listdir(tmp_path)) == ["session"]


def test_unlocked_write_refuses_an_existing_temp_name(kernels, path, tmp_path):
    temp = path + b".0123456789abcdef.tmp"
    open(temp, "wb").close()
    with pytest.raises(FileExistsError):
        kernels.io.write_unlocked(temp, path, holder_record(), b"{}", False)


def test_twins_read_each_others_files(path):
    from conftest import compiled_twin

    from fastsession import _io_py as py

    c = compiled_twin("io")
    py.write_unlocked(path + b".a.tmp", path, holder_record(), b'{"from":"py"}', False)
    assert c.read_session(path, False) == py.read_session(path, False)
    c.write_unlocked(path + b".b.tmp", path, holder_record(), b'{"from":"c"}', False)
    assert c.read_session(path, True)[:2] == py.read_session(path, True)[:2]


# -- what is not a regular file: never read, never blocks ------------------------------


def read_in_a_child(kernels, path, seconds=5.0):
    """What read_session gives in a forked child: b"C" for CorruptSession; b"" if it blocked."""
    from helpers import fork_child, kill_and_reap

    def body(report):
        try:
            kernels.io.read_session(path, True)
        except CorruptSession:
            os.write(report, b"C")
        else:
            os.write(report, b"R")

    pid, report = fork_child(body)
    import select

    ready, _, _ = select.select([report], [], [], seconds)
    answer = os.read(report, 1) if ready else b""
    kill_and_reap(pid)
    return answer


def test_fifo_in_place_of_a_session_is_corrupt_not_a_hang(kernels, path):
    os.mkfifo(path, 0o600)
    assert read_in_a_child(kernels, path) == b"C"  # b"" would mean it blocked on open or read


def test_device_node_in_place_of_a_session_is_corrupt_and_never_read(kernels, path):
    os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(1, 5))  # /dev/zero: reads never end
    assert read_in_a_child(kernels, path) == b"C"


def test_directory_in_place_of_a_session_is_corrupt(kernels, path):
    os.mkdir(path)
    with pytest.raises(CorruptSession, match="not a regular file"):
        kernels.io.read_session(path, False)


def test_file_over_the_size_cap_is_corrupt(kernels, path):
    from fastsession._io_py import MAX_SESSION_BYTES

    with open(path, "wb") as f:
        f.write(holder_record() + b'{"a":"')
        f.truncate(MAX_SESSION_BYTES + 100)  # sparse: costs no disk
    with pytest.raises(CorruptSession, match="larger than"):
        kernels.io.read_session(path, False)


def test_a_session_of_exactly_the_size_cap_reads_and_one_byte_more_does_not(kernels, path):
    from fastsession._io_py import MAX_SESSION_BYTES

    head = holder_record() + b'{"a":"'
    with open(path, "wb") as f:
        f.write(head + b"x" * (MAX_SESSION_BYTES - len(head) - 2) + b'"}')
    assert os.path.getsize(path) == MAX_SESSION_BYTES
    assert len(kernels.io.read_session(path, False)[0]["a"]) == MAX_SESSION_BYTES - len(head) - 2
    with open(path, "ab") as f:
        f.write(b" ")  # JSON allows trailing whitespace: the size alone refuses it
    with pytest.raises(CorruptSession, match="larger than"):
        kernels.io.read_session(path, False)


def test_the_holder_line_ends_at_the_first_newline_whatever_the_body_holds(kernels, path):
    with open(path, "wb") as f:
        f.write(holder_record() + b'{\n  "pretty": 1\n}\n')  # a body written by another tool, with newlines
    assert kernels.io.read_session(path, False)[0] == {"pretty": 1}


@pytest.mark.parametrize(
    ("content", "says"),
    [(b"\xff junk", "utf-8"), (b"[1, 2]", "not a json object")],
)
def test_a_corrupt_body_is_reported_with_its_path_and_what_is_wrong(path, content, says):
    from fastsession import _io_py

    with open(path, "wb") as f:
        f.write(holder_record() + content)
    with pytest.raises(CorruptSession) as corrupt:
        _io_py.read_session(path, False)
    assert str(corrupt.value).startswith(os.fsdecode(path) + ": ")
    assert says in str(corrupt.value).lower()
