"""The S3-compatible endpoint (placeholder until the object store lands)."""

from ..server.errors import AWSError
from ..server.http import Response


async def handle_s3(backends, request, scope, bucket_host):
    body = b"<Error><Code>NotImplemented</Code><Message>S3 is not implemented yet.</Message></Error>"
    return Response(501, body, [("Content-Type", "application/xml")])
