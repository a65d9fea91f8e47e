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


# Runs a command with getrandom(2) answering ENOSYS, as a kernel before Linux 3.17 does.
NO_GETRANDOM_C = r"""
#include <errno.h>
#include <stddef.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    struct sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_getrandom, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog program = {sizeof filter / sizeof filter[0], filter};
    if (argc < 2 || prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program))
        return 99;
    execv(argv[1], argv + 1);
    return 98;
}
"""


def test_ids_come_from_urandom_where_the_kernel_has_no_getrandom(kernels, tmp_path):
    import subprocess
    import sys

    source = tmp_path / "no_getrandom.c"
    source.write_text(NO_GETRANDOM_C)
    launcher = tmp_path / "no_getrandom"
    subprocess.run(["gcc", "-O1", "-o", str(launcher), str(source)], check=True)
    code = (
        "import errno, os, sys\n"
        "try:\n    os.getrandom(1)\nexcept OSError as exc:\n    assert exc.errno == errno.ENOSYS\n"
        "else:\n    sys.exit('getrandom still works: the filter is not in place')\n"
        f"import fastsession._ids_{kernels.name} as ids\n"
        "made = [ids.new_session_id() for _ in range(300)]\n"  # past two 4 KiB pools in the compiled twin
        "assert len(set(made)) == 300 and all(ids.is_valid_id(i) for i in made)\n"
        "print('ok')\n"
    )
    done = subprocess.run([str(launcher), sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
