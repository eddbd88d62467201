"""selfmaker/objects/transfer.py: objects and archives onto the host, through one account's view, confined."""

from __future__ import annotations

import pytest

from selfmaker.objects import transfer
from selfmaker.objects.access import AccountObjects
from selfmaker.objects.local import LocalObjectStore
from selfmaker.objects.ownership import Ownership
from selfmaker.server.errors import AWSError
from support.jobs import tar_gz

MINE, THEIRS = "111111111111", "222222222222"


class _Owners:
    def of(self, bucket: str) -> Ownership:
        return Ownership(THEIRS if bucket == "theirs" else MINE, "us-east-1")


@pytest.fixture
def objects(tmp_path):
    store = LocalObjectStore(tmp_path / "store")
    for bucket in ("mine", "theirs"):
        store.create_bucket(bucket)
    return AccountObjects(store, _Owners(), MINE)


def test_download_prefix_copies_every_object_below_the_prefix(objects, tmp_path):
    objects.put_object("mine", "data/a.csv", b"a")
    objects.put_object("mine", "data/sub/b.csv", b"b" * (3 * 1024 * 1024))  # several chunks
    objects.put_object("mine", "data/folder/", b"")
    objects.put_object("mine", "other/c.csv", b"c")
    assert transfer.download_prefix(objects, "mine", "data/", tmp_path / "out") == 2
    assert (tmp_path / "out/a.csv").read_bytes() == b"a"
    assert (tmp_path / "out/sub/b.csv").read_bytes() == b"b" * (3 * 1024 * 1024)
    assert not (tmp_path / "out/c.csv").exists()


def test_a_key_that_climbs_out_is_refused_before_it_is_written(objects, tmp_path):
    objects.put_object("mine", "data/../../escaped", b"x")
    with pytest.raises(transfer.OutsideDirectory) as caught:
        transfer.download_prefix(objects, "mine", "data/", tmp_path / "deep/out")
    assert caught.value.key == "data/../../escaped"
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "deep/escaped").exists()


def test_another_accounts_bucket_is_refused(objects, tmp_path):
    objects._objects.put_object("theirs", "model.tar.gz", tar_gz({"x": b"1"}))
    with pytest.raises(AWSError) as caught:
        transfer.extract_object(objects, "theirs", "model.tar.gz", tmp_path / "out")
    assert caught.value.code == "AccessDenied"
    with pytest.raises(AWSError):
        transfer.download(objects, "theirs", "model.tar.gz", tmp_path / "copy")
    assert not (tmp_path / "copy").exists()


def test_extract_object_unpacks_a_tar_gz(objects, tmp_path):
    objects.put_object("mine", "model.tar.gz", tar_gz({"model.pth": b"weights", "code/inference.py": b"pass"}))
    transfer.extract_object(objects, "mine", "model.tar.gz", tmp_path / "model")
    assert (tmp_path / "model/model.pth").read_bytes() == b"weights"
    assert (tmp_path / "model/code/inference.py").read_bytes() == b"pass"


@pytest.mark.parametrize("member", ["../escaped", "a/../../escaped"])
def test_a_member_the_data_filter_refuses_is_named_without_the_host_path(objects, tmp_path, member):
    objects.put_object("mine", "evil.tar.gz", tar_gz({member: b"x"}))
    dest = tmp_path / "secret-host-dir"
    with pytest.raises(transfer.RefusedMember) as caught:
        transfer.extract_object(objects, "mine", "evil.tar.gz", dest)
    assert caught.value.member == member
    assert str(tmp_path) not in str(caught.value) and "secret-host-dir" not in str(caught.value)
    assert not (tmp_path / "escaped").exists()


def test_bytes_that_are_not_an_archive(objects, tmp_path):
    objects.put_object("mine", "garbage.tar.gz", b"not a tar archive")
    with pytest.raises(transfer.NotAnArchive) as caught:
        transfer.extract_object(objects, "mine", "garbage.tar.gz", tmp_path / "secret-host-dir")
    assert "secret-host-dir" not in caught.value.detail
