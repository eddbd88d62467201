"""Strict mode: verify AWS Signature Version 4 as AWS does, and refuse as AWS does.

Both forms are verified: the ``Authorization`` header and presigned URLs (the
``X-Amz-*`` query parameters). The canonical request is rebuilt from the
request as received, per the SigV4 specification: only the headers the client
signed, their values trimmed with inner whitespace collapsed; the query decoded,
re-encoded and sorted (without ``X-Amz-Signature`` when presigned); the path
normalized and encoded a second time for every service but S3; and the payload
hash (the body's digest, or S3's ``x-amz-content-sha256``).

Refusals carry the code, status and wording the caller's protocol family uses
on AWS (:class:`Refusals`), so SDKs raise the exceptions users already handle.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from functools import cache
from urllib.parse import parse_qsl, quote

from botocore.utils import normalize_url_path

from .auth import Principal, Scope
from .credentials import Credential, KeyRing, load_credentials
from .errors import AWSError
from .http import Request
from .models import service_model

ALGORITHM = "AWS4-HMAC-SHA256"
MAX_SKEW = timedelta(minutes=15)
MAX_EXPIRES = 604800  # a week: the longest a presigned URL may live
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
STREAMING_SIGNED = ("STREAMING-AWS4-HMAC-SHA256-PAYLOAD", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER")
# What S3 accepts in x-amz-content-sha256 besides a digest (ECDSA is SigV4a, which we do not verify).
S3_PAYLOAD_MARKERS = (UNSIGNED_PAYLOAD, "STREAMING-UNSIGNED-PAYLOAD-TRAILER", *STREAMING_SIGNED)
PRESIGN_PARAMETERS = (
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Signature",
    "X-Amz-Date",
    "X-Amz-SignedHeaders",
    "X-Amz-Expires",
)
QUERY_SERVICES = ("sts", "iam")

_AMZ_DATE = re.compile(r"\d{8}T\d{6}Z")
_HEX_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_TIME_FORMAT = "%Y%m%dT%H%M%SZ"


def _stamp(moment: datetime) -> str:
    return moment.strftime(_TIME_FORMAT)


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).digest()


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = _hmac(f"AWS4{secret}".encode(), date)
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    return key


def _same(expected: str, provided: str) -> bool:
    return hmac.compare_digest(expected.encode(), provided.lower().encode("utf-8", "replace"))


# ---------------------------------------------------------------------------
# Refusals, worded per protocol family


class Refusals:
    """How the JSON 1.1 and rest-json services (sagemaker, logs, the runtimes) refuse a request."""

    unsigned_code, unsigned_message = "MissingAuthenticationTokenException", "Missing Authentication Token"
    incomplete_code = "IncompleteSignatureException"
    unknown_key_code, unknown_key_status = "UnrecognizedClientException", 400
    mismatch_code = "InvalidSignatureException"

    def unsigned(self) -> AWSError:
        return AWSError(self.unsigned_code, self.unsigned_message, 403)

    def malformed(self, message: str, presigned: bool) -> AWSError:
        return AWSError(self.incomplete_code, message, 400)

    def unsupported(self, algorithm: str, presigned: bool) -> AWSError:
        return self.malformed(
            f"Unsupported AWS 'algorithm': '{algorithm}'. SelfMaker verifies {ALGORITHM} (Signature Version 4).",
            presigned,
        )

    def no_date(self, value: str | None) -> AWSError:
        if value is None:
            return self.malformed(
                "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.", False
            )
        return self.malformed(
            f"Date must be in ISO-8601 'basic format'. Got '{value}'. See http://en.wikipedia.org/wiki/ISO_8601", False
        )

    def scope_date(self, scope_date: str, amz_date: str, presigned: bool) -> AWSError:
        return AWSError(
            self.mismatch_code,
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 "
            f"version of date from HTTP: '{scope_date}' != '{amz_date[:8]}', from '{amz_date}'.",
            403,
        )

    def unknown_key(self, access_key: str) -> AWSError:
        return AWSError(
            self.unknown_key_code, "The security token included in the request is invalid.", self.unknown_key_status
        )

    def session_token(self) -> AWSError:
        return AWSError(
            self.unknown_key_code,
            "The security token included in the request is invalid. SelfMaker issues no session "
            "tokens: sign with a long-term access key from its credentials file.",
            self.unknown_key_status,
        )

    def mismatch(self, access_key: str, canonical: str, string_to_sign: str, provided: str) -> AWSError:
        return AWSError(
            self.mismatch_code,
            "The request signature we calculated does not match the signature you provided. Check your AWS "
            "Secret Access Key and signing method. Consult the service documentation for details.\n\n"
            f"The Canonical String for this request should have been\n'{canonical}'\n\n"
            f"The String-to-Sign should have been\n'{string_to_sign}'\n",
            403,
        )

    def skewed(self, when: datetime, now: datetime) -> AWSError:
        if when < now:
            text = (
                f"Signature expired: {_stamp(when)} is now earlier than {_stamp(now - MAX_SKEW)} "
                f"({_stamp(now)} - 15 min.)"
            )
        else:
            text = (
                f"Signature not yet current: {_stamp(when)} is still later than {_stamp(now + MAX_SKEW)} "
                f"({_stamp(now)} + 15 min.)"
            )
        return AWSError(self.mismatch_code, text, 403)

    def expired(self, when: datetime, expires: int, now: datetime) -> AWSError:
        return AWSError(
            self.mismatch_code,
            f"Signature expired: the presigned request was valid until "
            f"{_stamp(when + timedelta(seconds=expires))} (X-Amz-Date {_stamp(when)} + "
            f"X-Amz-Expires {expires}); it is now {_stamp(now)}.",
            403,
        )

    def not_yet_valid(self, when: datetime, now: datetime) -> AWSError:
        return self.skewed(when, now)

    def both_mechanisms(self) -> AWSError:
        return self.malformed(
            "Only one auth mechanism allowed: sign with either the Authorization header "
            "or the X-Amz-* query parameters.",
            False,
        )

    def wrong_service(self, expected: str, presigned: bool) -> AWSError:
        return AWSError(self.mismatch_code, f"Credential should be scoped to correct service: '{expected}'. ", 403)

    # S3's own checks: reached only for requests signed for s3.
    def payload_hash(self, value: str | None) -> AWSError:
        return self.malformed(
            f"x-amz-content-sha256 must be {', '.join(S3_PAYLOAD_MARKERS)} or a valid sha256 value, not {value!r}.",
            False,
        )

    def unsigned_headers(self, names: list[str]) -> AWSError:
        return AWSError(
            self.mismatch_code,
            "There were headers present in the request which were not signed: " + ", ".join(names),
            403,
        )


class QueryRefusals(Refusals):
    """The query services (sts, iam): the same refusals, under their codes."""

    unsigned_code, unsigned_message = "MissingAuthenticationToken", "Request is missing Authentication Token"
    incomplete_code = "IncompleteSignature"
    unknown_key_code, unknown_key_status = "InvalidClientTokenId", 403
    mismatch_code = "SignatureDoesNotMatch"


class S3Refusals(Refusals):
    """S3's own codes, with the extra members its XML errors carry."""

    def unsigned(self) -> AWSError:
        return AWSError("AccessDenied", "Access Denied", 403)

    def malformed(self, message: str, presigned: bool) -> AWSError:
        if presigned:
            return AWSError("AuthorizationQueryParametersError", message, 400)
        return AWSError("AuthorizationHeaderMalformed", f"The authorization header is malformed; {message}", 400)

    def unsupported(self, algorithm: str, presigned: bool) -> AWSError:
        if presigned and algorithm != "AWS":
            return self.malformed(f'X-Amz-Algorithm only supports "{ALGORITHM}"', True)
        # Signature Version 2 ("AWS <key>:<signature>", or AWSAccessKeyId/Signature/Expires in the query).
        return AWSError(
            "InvalidRequest",
            "The authorization mechanism you have provided is not supported. "
            f"Please use {ALGORITHM}. (boto3 presigns S3 URLs with Signature Version 2 unless the "
            "client is made with Config(signature_version='s3v4').)",
            400,
        )

    def no_date(self, value: str | None) -> AWSError:
        return AWSError("AccessDenied", "AWS authentication requires a valid Date or x-amz-date header", 403)

    def scope_date(self, scope_date: str, amz_date: str, presigned: bool) -> AWSError:
        return self.malformed("Invalid credential date. Date is not the same as X-Amz-Date.", presigned)

    def unknown_key(self, access_key: str) -> AWSError:
        return AWSError(
            "InvalidAccessKeyId",
            "The AWS Access Key Id you provided does not exist in our records.",
            403,
            AWSAccessKeyId=access_key,
        )

    def session_token(self) -> AWSError:
        return AWSError(
            "InvalidToken",
            "The provided token is malformed or otherwise invalid. SelfMaker issues "
            "no session tokens: sign with a long-term access key.",
            400,
        )

    def mismatch(self, access_key: str, canonical: str, string_to_sign: str, provided: str) -> AWSError:
        return AWSError(
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the "
            "signature you provided. Check your key and signing method.",
            403,
            AWSAccessKeyId=access_key,
            StringToSign=string_to_sign,
            SignatureProvided=provided,
            CanonicalRequest=canonical,
        )

    def skewed(self, when: datetime, now: datetime) -> AWSError:
        return AWSError(
            "RequestTimeTooSkewed",
            "The difference between the request time and the current time is too large.",
            403,
            RequestTime=_stamp(when),
            ServerTime=now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            MaxAllowedSkewMilliseconds=str(int(MAX_SKEW.total_seconds() * 1000)),
        )

    def expired(self, when: datetime, expires: int, now: datetime) -> AWSError:
        return AWSError(
            "AccessDenied",
            "Request has expired",
            403,
            **{
                "X-Amz-Expires": str(expires),
                "Expires": (when + timedelta(seconds=expires)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "ServerTime": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            },
        )

    def not_yet_valid(self, when: datetime, now: datetime) -> AWSError:
        return AWSError(
            "AccessDenied",
            "Request is not valid yet",
            403,
            RequestTime=_stamp(when),
            ServerTime=now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        )

    def wrong_service(self, expected: str, presigned: bool) -> AWSError:
        return self.malformed(f"Credential should be scoped to correct service: '{expected}'.", presigned)

    def both_mechanisms(self) -> AWSError:
        return AWSError(
            "InvalidArgument",
            "Only one auth mechanism allowed; only the X-Amz-Algorithm query "
            "parameter, Signature query string parameter or the Authorization header should be "
            "specified",
            400,
        )

    def payload_hash(self, value: str | None) -> AWSError:
        if value is None:
            return AWSError("InvalidRequest", "Missing required header for this request: x-amz-content-sha256", 400)
        return AWSError(
            "InvalidArgument",
            f"x-amz-content-sha256 must be {', '.join(S3_PAYLOAD_MARKERS)} or a valid sha256 value.",
            400,
        )

    def unsigned_headers(self, names: list[str]) -> AWSError:
        return AWSError(
            "AccessDenied",
            "There were headers present in the request which were not signed",
            403,
            HeadersNotSigned=", ".join(names),
        )


@cache
def signing_name(service: str) -> str:
    """The service name a client puts in its credential scope (sagemaker-runtime signs as sagemaker,
    cloudwatch as monitoring)."""
    metadata = service_model(service).metadata
    return metadata.get("signingName") or metadata["endpointPrefix"]


# Headers that choose the operation or the wire protocol: a signature that leaves them out would let
# anyone who sees one signed request replay it as another operation (SigV4 signs only what is listed).
OPERATION_HEADERS = ("x-amz-target", "smithy-protocol")


def unsigned_protocol_headers(request: Request, claim: Claim) -> list[str]:
    required = [name for name in OPERATION_HEADERS if name in request.headers]
    if "smithy-protocol" in request.headers and "content-type" in request.headers:
        required.append("content-type")  # RPC v2 CBOR: the content type is the document's format
    signed = set(claim.header_names)
    return [name for name in required if name not in signed]


def _is_query(request: Request) -> bool:
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return "x-amz-target" not in request.headers and (
        content_type == "application/x-www-form-urlencoded" or "Action" in request.query
    )


def refusals_for(request: Request, scope: Scope | None, service: str | None) -> Refusals:
    """The family whose words refuse this request: by the service the caller names, else by the request."""
    name = service or (scope.service if scope else None)
    if name == "s3":
        return S3Refusals()
    if name in QUERY_SERVICES or _is_query(request):
        return QueryRefusals()  # CloudWatch and SQS query requests too: their clients parse query errors
    if name or "x-amz-target" in request.headers:
        return Refusals()
    return S3Refusals()  # unsigned, untargeted and unnamed: only the S3 endpoint asks about those


# ---------------------------------------------------------------------------
# What the client claims


@dataclass(frozen=True)
class Claim:
    """The signature a request carries: whose key, which scope, which headers, and when."""

    access_key: str
    date: str  # the credential scope's YYYYMMDD
    region: str
    service: str
    signed_headers: str  # as the client listed them: "host;x-amz-date"
    signature: str
    presigned: bool
    expires: int | None  # presigned: X-Amz-Expires
    token: str | None  # X-Amz-Security-Token

    @property
    def scope(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/aws4_request"

    @property
    def header_names(self) -> list[str]:
        return self.signed_headers.split(";")


def read_claim(request: Request, refuse: Refusals) -> Claim:
    authorization = request.headers.get("authorization")
    presigned = any(
        request.query_value(p) is not None for p in ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Signature")
    )
    if authorization is not None and presigned:
        raise refuse.both_mechanisms()
    if request.query_value("AWSAccessKeyId") is not None and request.query_value("Signature") is not None:
        raise refuse.unsupported("AWS", presigned=True)  # an S3 URL presigned with Signature Version 2
    if presigned:
        return _query_claim(request, refuse)
    if authorization is not None:
        return _header_claim(request, authorization, refuse)
    raise refuse.unsigned()


def _header_claim(request: Request, authorization: str, refuse: Refusals) -> Claim:
    algorithm, _, rest = authorization.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise refuse.unsupported(algorithm, presigned=False)
    fields = {}
    for part in rest.split(","):
        name, eq, value = part.strip().partition("=")
        if eq:
            fields[name] = value.strip()
    missing = [
        f"Authorization header requires '{name}' parameter."
        for name in ("Credential", "Signature", "SignedHeaders")
        if not fields.get(name)
    ]
    if missing:
        raise refuse.malformed(" ".join(missing) + f" Authorization={authorization}", presigned=False)
    return _claim(
        fields["Credential"],
        fields["SignedHeaders"],
        fields["Signature"],
        False,
        None,
        request.headers.get("x-amz-security-token"),
        refuse,
    )


def _query_claim(request: Request, refuse: Refusals) -> Claim:
    found = {name: request.query_value(name) for name in PRESIGN_PARAMETERS}
    values = {name: value for name, value in found.items() if value is not None}
    if len(values) < len(found):
        raise refuse.malformed(
            "Query-string authentication version 4 requires the X-Amz-Algorithm, "
            "X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and "
            "X-Amz-Expires parameters.",
            presigned=True,
        )
    if values["X-Amz-Algorithm"] != ALGORITHM:
        raise refuse.unsupported(values["X-Amz-Algorithm"], presigned=True)
    raw_expires = values["X-Amz-Expires"]
    if not raw_expires.isdigit():
        raise refuse.malformed("X-Amz-Expires should be a number", presigned=True)
    expires = int(raw_expires)
    if expires > MAX_EXPIRES:
        raise refuse.malformed(
            f"X-Amz-Expires must be less than a week (in seconds) that is {MAX_EXPIRES}", presigned=True
        )
    return _claim(
        values["X-Amz-Credential"],
        values["X-Amz-SignedHeaders"],
        values["X-Amz-Signature"],
        True,
        expires,
        request.query_value("X-Amz-Security-Token"),
        refuse,
    )


def _claim(
    credential: str,
    signed_headers: str,
    signature: str,
    presigned: bool,
    expires: int | None,
    token: str | None,
    refuse: Refusals,
) -> Claim:
    parts = credential.split("/")
    if len(parts) != 5 or parts[4] != "aws4_request" or not re.fullmatch(r"\d{8}", parts[1]) or not all(parts):
        raise refuse.malformed(
            f"Credential should be scoped to a valid region and service: "
            f"'<access key>/<YYYYMMDD>/<region>/<service>/aws4_request', not '{credential}'.",
            presigned,
        )
    if "host" not in signed_headers.split(";"):
        raise refuse.malformed("'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.", presigned)
    return Claim(parts[0], parts[1], parts[2], parts[3], signed_headers, signature, presigned, expires, token)


def request_time(request: Request, claim: Claim, refuse: Refusals) -> tuple[datetime, str]:
    """When the request says it was signed, and that moment as the string-to-sign spells it."""
    if claim.presigned:
        raw = request.query_value("X-Amz-Date")  # present: read_claim refuses a presigned URL without it
        if raw is None or not _AMZ_DATE.fullmatch(raw):
            raise refuse.malformed("X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"", True)
    elif (raw := request.headers.get("x-amz-date")) is not None:
        if not _AMZ_DATE.fullmatch(raw):
            raise refuse.no_date(raw)
    elif (http_date := request.headers.get("date")) is not None:
        try:
            moment = parsedate_to_datetime(http_date).astimezone(UTC)
        except (TypeError, ValueError):
            raise refuse.no_date(http_date) from None
        return moment, _stamp(moment)
    else:
        raise refuse.no_date(None)
    try:
        return datetime.strptime(raw, _TIME_FORMAT).replace(tzinfo=UTC), raw
    except ValueError:  # well formed, but not a date (month 13)
        raise refuse.no_date(raw) from None


# ---------------------------------------------------------------------------
# The canonical request


def canonical_request(request: Request, claim: Claim, payload_hash: str) -> str:
    return "\n".join(
        [
            request.method,
            canonical_path(request.raw_path, claim.service),
            canonical_query(request.raw_query, claim.presigned),
            canonical_headers(request, claim.header_names),
            claim.signed_headers,
            payload_hash,
        ]
    )


def canonical_path(raw_path: str, service: str) -> str:
    path = raw_path.split("?", 1)[0] or "/"
    if service == "s3":
        return path  # S3 signs the path exactly as sent: keys may hold "//" or "." segments
    # Every other service signs the normalized path, percent-encoded once more.
    return quote(normalize_url_path(path), safe="/~")


def canonical_query(raw_query: str, presigned: bool) -> str:
    pairs = []
    for name, value in parse_qsl(raw_query, keep_blank_values=True):
        if presigned and name == "X-Amz-Signature":
            continue
        pairs.append((quote(name, safe="-_.~"), quote(value, safe="-_.~")))
    return "&".join(f"{name}={value}" for name, value in sorted(pairs))


def canonical_headers(request: Request, names: list[str]) -> str:
    """One "name:value" line per signed header; repeated headers joined by commas, whitespace collapsed."""
    values: dict[str, list[str]] = {}
    for raw_name, raw_value in request.scope["headers"]:
        values.setdefault(raw_name.decode("latin-1").lower(), []).append(raw_value.decode("latin-1"))
    return "".join(f"{name}:{','.join(' '.join(v.split()) for v in values.get(name, []))}\n" for name in names)


def string_to_sign(amz_date: str, scope: str, canonical: str) -> str:
    return "\n".join([ALGORITHM, amz_date, scope, hashlib.sha256(canonical.encode("utf-8")).hexdigest()])


# ---------------------------------------------------------------------------
# Streaming uploads


class ChunkVerifier:
    """The chained signatures of an ``aws-chunked`` upload signed STREAMING-AWS4-HMAC-SHA256-PAYLOAD.

    Each chunk's signature covers its bytes and the previous signature, starting from the
    request's own: chunks can be neither altered, dropped nor reordered. Call :meth:`chunk`
    for every chunk in order, the final empty one included, then :meth:`trailer` when the
    payload is ``...-TRAILER``.
    """

    def __init__(self, key: bytes, amz_date: str, scope: str, seed_signature: str, access_key: str):
        self._key, self._amz_date, self._scope = key, amz_date, scope
        self._previous = seed_signature
        self._access_key = access_key

    def chunk(self, data: bytes, signature: str) -> None:
        self._check("AWS4-HMAC-SHA256-PAYLOAD", EMPTY_SHA256 + "\n" + hashlib.sha256(data).hexdigest(), signature)

    def trailer(self, canonical_trailer: bytes, signature: str) -> None:
        """``canonical_trailer``: the trailing headers as ``name:value\\n`` lines (``x-amz-checksum-crc32:…\\n``)."""
        self._check("AWS4-HMAC-SHA256-TRAILER", hashlib.sha256(canonical_trailer).hexdigest(), signature)

    def _check(self, algorithm: str, digests: str, signature: str) -> None:
        text = "\n".join([algorithm, self._amz_date, self._scope, self._previous, digests])
        expected = hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()
        if not _same(expected, signature):
            raise AWSError(
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the "
                "signature you provided. Check your key and signing method.",
                403,
                AWSAccessKeyId=self._access_key,
                StringToSign=text,
                SignatureProvided=signature,
            )
        self._previous = expected


# ---------------------------------------------------------------------------
# The authenticator


class StrictAuthenticator:
    """Only keys of the credentials file, with a valid SigV4 signature, get in."""

    checks_payload = True

    def __init__(self, settings, clock=time.time):
        self.credentials = KeyRing(load_credentials(settings.credentials_file))
        self.clock = clock

    def check_headers(self, request: Request, scope: Scope | None, service: str | None = None) -> None:
        """Every check the headers alone decide (who, when, which scope, what is signed): the refusals
        that must come before a single body byte is read."""
        self._admit(request, scope, service)

    def authenticate(
        self, request: Request, scope: Scope | None, payload_sha256: str | None, service: str | None = None
    ) -> Principal:
        """The caller, or the AWSError refusing them.

        ``payload_sha256`` ends the canonical request: the body's SHA-256 for every service but
        S3; for S3, the ``x-amz-content-sha256`` header as sent (None when absent). ``service``
        names the botocore service answering, when the caller knows it: the credential scope
        must then name that service's signing name.
        """
        refuse, claim, credential, amz_date = self._admit(request, scope, service)
        payload = self._payload(request, claim, payload_sha256, refuse)

        canonical = canonical_request(request, claim, payload)
        to_sign = string_to_sign(amz_date, claim.scope, canonical)
        key = signing_key(credential.secret_key, claim.date, claim.region, claim.service)
        expected = hmac.new(key, to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
        if not _same(expected, claim.signature):
            raise refuse.mismatch(claim.access_key, canonical, to_sign, claim.signature)

        streaming = None
        if payload in STREAMING_SIGNED:
            streaming = ChunkVerifier(key, amz_date, claim.scope, expected, claim.access_key)
        return Principal(
            account_id=credential.account_id,
            access_key=credential.access_key,
            region=claim.region,
            user_name=credential.user_name,
            streaming=streaming,
        )

    def _admit(
        self, request: Request, scope: Scope | None, service: str | None
    ) -> tuple[Refusals, Claim, Credential, str]:
        refuse = refusals_for(request, scope, service)
        claim = read_claim(request, refuse)
        when, amz_date = request_time(request, claim, refuse)
        if claim.date != amz_date[:8]:
            raise refuse.scope_date(claim.date, amz_date, claim.presigned)
        if service is not None and claim.service != (expected := signing_name(service)):
            raise refuse.wrong_service(expected, claim.presigned)
        credential = self.credentials.get(claim.access_key)
        if credential is None:
            raise refuse.unknown_key(claim.access_key)
        if claim.token is not None:
            raise refuse.session_token()
        self._check_time(claim, when, refuse)
        if claim.service != "s3" and (unsigned := unsigned_protocol_headers(request, claim)):
            raise refuse.unsigned_headers(unsigned)
        return refuse, claim, credential, amz_date

    def _check_time(self, claim: Claim, when: datetime, refuse: Refusals) -> None:
        now = datetime.fromtimestamp(self.clock(), UTC).replace(microsecond=0)
        if claim.presigned:
            if claim.expires is None:  # _query_claim sets it on every presigned claim
                raise RuntimeError("a presigned claim without X-Amz-Expires")
            if when - now > MAX_SKEW:
                raise refuse.not_yet_valid(when, now)
            if now > when + timedelta(seconds=claim.expires):
                raise refuse.expired(when, claim.expires, now)
        elif abs(now - when) > MAX_SKEW:
            raise refuse.skewed(when, now)

    @staticmethod
    def _payload(request: Request, claim: Claim, payload_sha256: str | None, refuse: Refusals) -> str:
        if claim.service != "s3":
            return payload_sha256 or EMPTY_SHA256
        if claim.presigned:
            return UNSIGNED_PAYLOAD  # a presigned S3 URL never covers the body
        if payload_sha256 is None or (
            payload_sha256 not in S3_PAYLOAD_MARKERS and not _HEX_SHA256.fullmatch(payload_sha256)
        ):
            raise refuse.payload_hash(payload_sha256)
        # S3 refuses x-amz-* headers the client did not sign: they could change what the request does.
        signed = set(claim.header_names)
        unsigned = sorted(n for n in request.headers if n.startswith("x-amz-") and n not in signed)
        if unsigned:
            raise refuse.unsigned_headers(unsigned)
        return payload_sha256
