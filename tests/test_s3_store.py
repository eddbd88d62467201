"""The object store itself: keys that cannot escape it, accounts owning their buckets, both backends directly,
crash safety and reader snapshots."""

from __future__ import annotations

import hashlib
import socket
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from selfmaker.objects import open_object_store
from support.clients import make_client
from support.s3 import MB, b64, bucket_fixture, error_code, raw_request, s3_fixture, status  # noqa: F401  (the s3 and bucket fixtures)
from support.waiting import wait_for

# -- safety ----------------------------------------------------------------------------------------------------


def test_keys_cannot_escape_the_store(server, s3, bucket):
    c = s3()
    tricky = [
        "../../escape.txt",
        "/abs/olute",
        "a/../../../b",
        "..",
        ".",
        "nul\x00byte",
        "back\\slash",
        "trailing/",
        "x" * 1024,
    ]
    for key in tricky:
        c.put_object(Bucket=bucket, Key=key, Body=key.encode())
    for key in tricky:
        assert c.get_object(Bucket=bucket, Key=key)["Body"].read() == key.encode()
    listed = [
        o["Key"] for o in c.get_paginator("list_objects_v2").paginate(Bucket=bucket).build_full_result()["Contents"]
    ]
    assert listed == sorted(tricky, key=lambda k: k.encode())
    # No key became a path: nothing anywhere near the data directory is named after one.
    names = {"escape.txt", "olute", "b", "nul\x00byte", "back\\slash", "trailing", "x" * 1024}
    assert not [p for p in server.data_dir.parent.rglob("*") if p.name in names]
    assert not Path("/escape.txt").exists()

    with pytest.raises(ClientError) as e:
        c.put_object(Bucket=bucket, Key="y" * 1025, Body=b"x")
    assert error_code(e) == "KeyTooLongError"
    for path in (
        f"/{bucket}/../../../../etc/passwd",
        f"/{bucket}/..%2F..%2F..%2Fetc%2Fpasswd",
        "/../../etc/passwd",
        "/..%2F..%2Fetc/passwd",
    ):
        code, body = raw_request(server, "GET", path)
        assert code in (400, 404) and b"root:" not in body


@pytest.mark.both_databases  # bucket ownership lives in the metadata database
def test_accounts_own_their_buckets(make_server, tmp_path, unique):
    credentials = tmp_path / "credentials.ini"
    credentials.write_text(
        "[AKIDALICE]\nsecret_access_key = alice-secret\naccount_id = 111111111111\n\n"
        "[AKIDBOB]\nsecret_access_key = bob-secret\naccount_id = 222222222222\n"
    )
    srv = make_server("s3-accounts", ["--auth", "strict", "--credentials-file", str(credentials)]).start()

    def as_(key, secret):
        return make_client("s3", srv.url, access_key=key, secret_key=secret, signature_version="s3v4")

    alice, bob = as_("AKIDALICE", "alice-secret"), as_("AKIDBOB", "bob-secret")
    name = unique("alice")
    alice.create_bucket(Bucket=name)
    alice.put_object(Bucket=name, Key="secret", Body=b"alice's")
    assert name in [b["Name"] for b in alice.list_buckets()["Buckets"]]
    assert name not in [b["Name"] for b in bob.list_buckets()["Buckets"]]
    for call in (
        lambda: bob.head_bucket(Bucket=name),
        lambda: bob.get_object(Bucket=name, Key="secret"),
        lambda: bob.put_object(Bucket=name, Key="x", Body=b"x"),
        lambda: bob.delete_bucket(Bucket=name),
        lambda: bob.copy_object(Bucket=name, Key="c", CopySource={"Bucket": name, "Key": "secret"}),
    ):
        with pytest.raises(ClientError) as e:
            call()
        assert status(e) == 403
    with pytest.raises(ClientError) as e:
        bob.create_bucket(Bucket=name)
    assert (error_code(e), status(e)) == ("BucketAlreadyExists", 409)
    with pytest.raises(ClientError) as e:
        bob.head_bucket(Bucket=name + "-missing")
    assert status(e) == 404
    assert alice.get_object(Bucket=name, Key="secret")["Body"].read() == b"alice's"

    # Signatures are checked over S3 requests too, and presigned URLs work (and are checked).
    with pytest.raises(ClientError) as e:
        as_("AKIDALICE", "wrong-secret").get_object(Bucket=name, Key="secret")
    assert (error_code(e), status(e)) == ("SignatureDoesNotMatch", 403)
    url = alice.generate_presigned_url("get_object", Params={"Bucket": name, "Key": "secret"}, ExpiresIn=60)
    with urllib.request.urlopen(url) as response:
        assert response.read() == b"alice's"
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(url.replace("Signature=", "Signature=0"))
    assert e.value.code == 403
    put_url = alice.generate_presigned_url("put_object", Params={"Bucket": name, "Key": "via-url"}, ExpiresIn=60)
    with urllib.request.urlopen(urllib.request.Request(put_url, data=b"uploaded", method="PUT")) as response:
        assert response.status == 200
    assert alice.get_object(Bucket=name, Key="via-url")["Body"].read() == b"uploaded"


# -- the backends directly --------------------------------------------------------------------------------------


def test_remote_backend_against_our_server(server, unique, tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    store = open_object_store(f"s3://rmt-?endpoint_url={server.url}&region=us-east-1")
    name = unique("b")
    store.create_bucket(name)
    assert name in [b.name for b in store.list_buckets()]
    info = store.put_object(name, "dir/a.txt", b"alpha", checksum_algorithm="SHA256")
    assert info.etag == hashlib.md5(b"alpha").hexdigest()
    assert info.checksums == {"SHA256": b64(hashlib.sha256(b"alpha").digest())}
    store.put_object(name, "dir/sub/b.txt", iter([b"be", b"ta"]))
    store.put_object(name, "other", b"x")
    assert store.get_object(name, "dir/sub/b.txt") == b"beta"
    assert store.get_object(name, "dir/a.txt", 1, 3) == b"lp"
    page = store.list_objects(name, prefix="dir/", delimiter="/")
    assert ([o.key for o in page.objects], page.common_prefixes) == (["dir/a.txt"], ["dir/sub/"])
    first = store.list_objects(name, delimiter="/", max_keys=1)
    assert first.is_truncated and first.common_prefixes == ["dir/"]
    rest = store.list_objects(name, delimiter="/", start_after=first.next_marker)
    assert [o.key for o in rest.objects] == ["other"] and rest.common_prefixes == []
    store.copy_object(name, "dir/a.txt", name, "copy.txt")
    assert store.head_object(name, "copy.txt").size == 5

    downloaded = store.download_prefix(f"s3://{name}/dir/", tmp_path / "down")
    assert sorted(p.relative_to(tmp_path / "down").as_posix() for p in downloaded) == ["a.txt", "sub/b.txt"]
    store.upload_directory(tmp_path / "down", f"s3://{name}/again")
    assert sorted(o.key for o in store.iter_objects(name, "again/")) == ["again/a.txt", "again/sub/b.txt"]

    upload_id = store.create_multipart_upload(name, "mp")
    from selfmaker.objects import CompletedPart

    p1 = store.upload_part(name, "mp", upload_id, 1, b"a" * (5 * MB))
    p2 = store.upload_part(name, "mp", upload_id, 2, b"b")
    assert [p.part_number for p in store.list_parts(name, "mp", upload_id).parts] == [1, 2]
    done = store.complete_multipart_upload(
        name, "mp", upload_id, [CompletedPart(1, p1.etag), CompletedPart(2, p2.etag)]
    )
    assert done.size == 5 * MB + 1 and done.parts_count == 2
    with store.open_object(name, "mp") as reader:
        assert reader.read(5 * MB - 1) == b"ab"

    from selfmaker.server.errors import AWSError

    with pytest.raises(AWSError) as e:
        store.get_object(name, "missing")
    assert e.value.code == "NoSuchKey"
    with pytest.raises(AWSError) as e:
        store.delete_bucket(name)
    assert e.value.code == "BucketNotEmpty"
    for info in list(store.iter_objects(name)):
        store.delete_object(name, info.key)
    store.delete_bucket(name)
    with pytest.raises(AWSError) as e:
        store.head_bucket(name)
    assert e.value.code == "NoSuchBucket"


def test_local_backend_helpers_refuse_escaping_keys(tmp_path):
    store = open_object_store((tmp_path / "objects").as_uri())
    store.create_bucket("helpers")
    store.put_object("helpers", "p/ok.txt", b"ok")
    store.put_object("helpers", "p/../../evil.txt", b"evil")
    from selfmaker.server.errors import AWSError

    with pytest.raises(AWSError):
        store.download_prefix("s3://helpers/p/", tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists()
    store.close()


def test_a_crash_mid_upload_leaves_no_partial_object(make_server):
    srv = make_server("s3-crash").start()
    c = make_client("s3", srv.url)
    c.create_bucket(Bucket="crash")
    c.put_object(Bucket="crash", Key="k", Body=b"old")
    conn = socket.create_connection(("127.0.0.1", srv.port))
    conn.sendall(b"PUT /crash/k HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10000000\r\n\r\n" + b"n" * 3_000_000)
    wait_for(
        lambda: any((srv.data_dir / "objects" / "staging").iterdir()),
        timeout=10,
        interval=0.05,
        what="the server to receive the body",
    )
    srv.kill()
    conn.close()
    srv.start()
    assert c.get_object(Bucket="crash", Key="k")["Body"].read() == b"old"
    assert [o["Key"] for o in c.list_objects_v2(Bucket="crash")["Contents"]] == ["k"]


def test_readers_keep_their_snapshot_while_a_key_is_overwritten(tmp_path):
    store = open_object_store((tmp_path / "objects").as_uri())
    store.create_bucket("snap")
    store.put_object("snap", "k", b"a" * (3 * MB))
    with store.open_object("snap", "k") as reader:
        first = next(reader.chunks(chunk_size=MB))
        store.put_object("snap", "k", b"b" * 10)
        store.delete_object("snap", "k")
        assert first + b"".join(reader.chunks(MB)) == b"a" * (3 * MB)
    assert list((tmp_path / "objects" / "staging").iterdir()) == []
    store.close()
