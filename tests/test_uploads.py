"""UploadGate alone: which client-named files are opened, and what happens to them after."""
import pytest

from cmr_demo.serve.inputs import InputError
import os
import time

from cmr_demo.serve.uploads import NOT_UPLOADED, UploadGate, sweep


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "uploads" / "a").mkdir(parents=True)
    return tmp_path / "uploads"


def gate(folder, uploaded, examples=(), **kw):
    return UploadGate(folder, lambda: uploaded, lambda: frozenset(examples), **kw)


def test_only_files_the_app_received_are_read(folder, tmp_path):
    outside = tmp_path / "secret.png"
    outside.write_bytes(b"secret")
    planted = folder / "a" / "planted.png"
    planted.write_bytes(b"planted")
    link = folder / "a" / "link.png"
    link.symlink_to(outside)
    g = gate(folder, {str(link), str(folder / "a" / ".." / ".." / "secret.png")})
    for path in (str(outside), str(planted), "secret.png"):  # not received: refused by name, never opened
        with pytest.raises(InputError, match="never opened"):
            g.read({"path": path})
    for path in (str(link), str(folder / "a" / ".." / ".." / "secret.png")):  # received names that leave the folder
        with pytest.raises(InputError, match="never opened"):
            g.read({"path": path})
    assert outside.read_bytes() == b"secret" and planted.exists()
    for bad in (None, 5, {"path": 5}, {"path": ""}, {"path": "a\x00b"}, ["x"]):
        with pytest.raises(InputError):
            g.read(bad)


def test_an_upload_is_deleted_once_read_and_kept_in_memory_for_repeats(folder):
    path = folder / "a" / "q.png"
    path.write_bytes(b"x" * 100)
    uploaded = {str(path)}
    g = gate(folder, uploaded, keep_bytes=150)
    assert g.read({"path": str(path)}) == b"x" * 100
    assert not path.exists() and str(path) not in uploaded
    assert path.parent.is_dir()  # gradio may be storing the same picture there right now (UploadGate._delete)
    assert g.read(str(path)) == b"x" * 100  # the page sends the same file again
    other = folder / "b.png"
    other.write_bytes(b"y" * 100)
    uploaded.add(str(other))
    g.read({"path": str(other)})  # 200 bytes > 150: the first one leaves the memory
    with pytest.raises(InputError, match="no longer on the server"):
        g.read({"path": str(path)})


def test_examples_are_read_but_never_deleted_and_size_is_capped(folder):
    example = folder / "a" / "example.png"
    example.write_bytes(b"e" * 10)
    g = gate(folder, set(), examples=[str(example)], keep_bytes=0)
    assert g.read({"path": str(example)}) == b"e" * 10 and example.exists()
    big = folder / "big.png"
    big.write_bytes(b"b" * 2000)
    with pytest.raises(InputError, match="more than the"):
        gate(folder, {str(big)}, max_bytes=1000).read({"path": str(big)})
    assert NOT_UPLOADED.endswith("upload the picture instead")


def test_sweep_deletes_old_files_except_kept_ones_and_empty_folders(folder):
    old, kept, fresh = folder / "a" / "old.png", folder / "keep" / "example.png", folder / "b" / "fresh.png"
    for path in (old, kept, fresh):
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"x")
    registry = {str(old), str(fresh)}
    time.sleep(1.1)
    fresh.write_bytes(b"y")
    os.utime(fresh)
    assert sweep(folder, 1.0, lambda: {str(kept)}, lambda: [registry]) == 1
    assert not old.exists() and not old.parent.exists() and kept.exists() and fresh.exists()
    assert registry == {str(fresh)}
