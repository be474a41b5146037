"""Writes to whatever lies at an output path (files.py): regular files replaced atomically, links
followed, `-` to stdout, character devices and FIFOs written in place, directories, block
devices and sockets refused; every failure one line naming the path, exit 2."""

from __future__ import annotations

import errno
import json
import os
import socket
import stat
import threading

import numpy as np
import pytest
from fakes import one_line, run_cli

from manifold_probe import files
from manifold_probe.errors import InputError


@pytest.fixture()
def points(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.random.default_rng(0).normal(size=(60, 3)))
    return path


def test_a_symlink_is_followed_and_its_target_replaced(tmp_path, points, capsys):
    target = tmp_path / "real.json"
    target.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    assert run_cli(["id", "--points", points, "--json", link], capsys)[0] == 0
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert json.loads(target.read_text())["command"] == "id"
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_dangling_symlink_creates_its_target(tmp_path, points, capsys):
    link = tmp_path / "link.json"
    link.symlink_to(tmp_path / "new.json")
    assert run_cli(["id", "--points", points, "--json", link], capsys)[0] == 0
    assert link.is_symlink() and json.loads((tmp_path / "new.json").read_text())["command"] == "id"


def test_dash_writes_the_json_alone_to_stdout(points, capsys):
    code, out, err = run_cli(["id", "--points", points, "--json", "-"], capsys)
    assert code == 0
    assert json.loads(out)["command"] == "id"  # the table went to stderr
    assert "id_twonn" in err or "twonn" in err


def test_a_fifo_is_written_in_place(tmp_path, points, capsys):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    code, _, _ = run_cli(["id", "--points", points, "--json", fifo], capsys)
    reader.join(timeout=60)
    assert code == 0
    assert json.loads(received[0])["command"] == "id"
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def _null_device(tmp_path):
    path = tmp_path / "null"
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("creating a device node needs root")
    return path


def test_a_character_device_stays_a_device(tmp_path, points, capsys):
    device = _null_device(tmp_path)
    assert run_cli(["id", "--points", points, "--json", device], capsys)[0] == 0
    assert stat.S_ISCHR(os.stat(device).st_mode)
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_full_device_is_one_line_naming_it(points, capsys):
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    code, _, err = run_cli(["id", "--points", points, "--json", "/dev/full"], capsys)
    assert code == 2
    assert "cannot write /dev/full: No space left on device" in one_line(err)
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)


def test_a_socket_a_directory_and_a_path_under_a_file_are_refused(tmp_path, points, capsys):
    sock_path = tmp_path / "sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(sock_path))
    try:
        code, _, err = run_cli(["id", "--points", points, "--json", sock_path], capsys)
        assert code == 2 and "is a socket" in one_line(err)
        assert stat.S_ISSOCK(os.stat(sock_path).st_mode)
    finally:
        server.close()
    code, _, err = run_cli(["id", "--points", points, "--json", tmp_path], capsys)
    assert code == 2 and f"cannot write {tmp_path}: it is a directory" in one_line(err)
    under = points / "out.json"
    code, _, err = run_cli(["id", "--points", points, "--json", under], capsys)
    assert code == 2 and f"cannot write {under}" in one_line(err)


def test_a_read_only_file_system_names_the_path(tmp_path, monkeypatch):
    def read_only(*_, **__):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(files.tempfile, "mkstemp", read_only)
    target = tmp_path / "out.json"
    with pytest.raises(InputError, match=f"cannot write {target}: Read-only file system"):
        with files.atomic_write(target) as handle:
            handle.write("x")


def test_a_writer_failing_on_a_full_disk_names_the_path(tmp_path, monkeypatch):
    """torch.save reports a full disk as `RuntimeError: ... unexpected pos 64 vs 0`."""

    def torch_save_on_full_disk(tmp):
        raise RuntimeError("[enforce fail at inline_container.cc] . unexpected pos 64 vs 0")

    monkeypatch.setattr(files, "_free_bytes", lambda folder: 0)
    target = tmp_path / "model.pt"
    with pytest.raises(InputError, match=f"cannot write {target}: No space left on device"):
        files.atomic_save(target, torch_save_on_full_disk)
    assert not list(tmp_path.iterdir())
    monkeypatch.setattr(files, "_free_bytes", lambda folder: 2**40)
    with pytest.raises(RuntimeError, match="unexpected pos"):  # with room left it is not a full disk
        files.atomic_save(target, torch_save_on_full_disk)


def test_atomic_save_copies_to_a_device_and_stdout(tmp_path, capfd):
    device = _null_device(tmp_path)
    files.atomic_save(device, lambda tmp: np.save(tmp, np.arange(3)))
    assert stat.S_ISCHR(os.stat(device).st_mode)
    files.atomic_save("-", lambda tmp: open(tmp, "w").write("hello"))
    assert capfd.readouterr().out == "hello"
