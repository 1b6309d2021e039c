"""The S3-compatible server (SeaweedFS) through the minio SDK."""

import io
import uuid
from datetime import timedelta

import httpx
from minio import Minio
from minio.commonconfig import ENABLED
from minio.sse import SseS3
from minio.versioningconfig import VersioningConfig

from tests.support.services import reach, require


def _client(services):
    s3 = services.s3
    require(s3.endpoint, "s3")
    return Minio(s3.endpoint, s3.access_key, s3.secret_key, secure=s3.secure)


def _bucket(client):
    name = f"smoke-{uuid.uuid4().hex[:10]}"
    reach("s3", client._base_url.host, client.make_bucket, name)
    return name


def _empty(client, bucket):
    for obj in client.list_objects(bucket, recursive=True, include_version=True):
        client.remove_object(bucket, obj.object_name, version_id=obj.version_id)
    client.remove_bucket(bucket)


def test_put_get_and_presigned_url(services):
    client = _client(services)
    bucket = _bucket(client)
    try:
        client.put_object(bucket, "hello.txt", io.BytesIO(b"hello"), 5)
        assert client.get_object(bucket, "hello.txt").read() == b"hello"
        url = client.presigned_get_object(bucket, "hello.txt", expires=timedelta(minutes=5))
        assert httpx.get(url).content == b"hello"
        assert httpx.get(url.split("?")[0]).status_code == 403, "anonymous read was allowed"
    finally:
        _empty(client, bucket)


def test_versioning_and_server_side_encryption(services):
    client = _client(services)
    bucket = _bucket(client)
    try:
        client.set_bucket_versioning(bucket, VersioningConfig(ENABLED))
        for body in (b"v1", b"v2"):
            client.put_object(bucket, "doc", io.BytesIO(body), len(body))
        versions = list(client.list_objects(bucket, prefix="doc", include_version=True))
        assert len(versions) == 2
        client.put_object(bucket, "secret", io.BytesIO(b"s"), 1, sse=SseS3())
        assert client.stat_object(bucket, "secret").metadata["x-amz-server-side-encryption"] == "AES256"
    finally:
        _empty(client, bucket)
