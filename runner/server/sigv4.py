"""SigV4 verification of the requests the control plane receives.

The expected signature is computed by botocore's own signer (``botocore.auth.SigV4Auth``) over the
request as received, with the request's own ``X-Amz-Date``, and compared in constant time; nothing
of the algorithm is re-implemented here. Failures carry the code, HTTP status and text AWS's JSON
services send, so botocore raises the ``ClientError`` a user of AWS would see. Secrets and the
Authorization header never appear in a message or a log line.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from botocore.auth import SIGV4_TIMESTAMP, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "sagemaker"
MAX_SKEW_S = 300
AMZ_DATE = "X-Amz-Date"
CONTENT_SHA256 = "X-Amz-Content-SHA256"
SECURITY_TOKEN = "X-Amz-Security-Token"
_PARAM = re.compile(r"\s*([A-Za-z]+)=([^,\s]*)\s*")


@dataclass(frozen=True)
class Identity:
    """One set of credentials the server accepts."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)


API_KEYS_VAR = "BATCH_TRANSFORM_API_KEYS"
API_KEYS_FILE_VAR = "BATCH_TRANSFORM_API_KEYS_FILE"


def identities_from_env(environ: Mapping[str, str] | None = None) -> dict[str, Identity]:
    """AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN) of the server's environment."""
    env = os.environ if environ is None else environ
    key, secret = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
    if not key or not secret:
        return {}
    return {key: Identity(key, secret, env.get("AWS_SESSION_TOKEN") or None)}


def parse_api_keys(text: str, source: str) -> dict[str, Identity]:
    """``ACCESS_KEY_ID:SECRET_ACCESS_KEY`` pairs, one per line or comma-separated; ``#`` starts a
    comment. Errors name the source and the entry's place, never the secret."""
    identities: dict[str, Identity] = {}
    entries = [e.strip() for line in text.splitlines() for e in line.split("#", 1)[0].split(",")]
    for n, entry in enumerate((e for e in entries if e), start=1):
        key, sep, secret = entry.partition(":")
        key, secret = key.strip(), secret.strip()
        if not sep or not key or not secret or any(c.isspace() for c in key + secret):
            shown = key if sep else "(no ':')"
            raise ValueError(
                f"{source}: API key {n} ({shown}) is not ACCESS_KEY_ID:SECRET_ACCESS_KEY (one pair a line or "
                "comma-separated, no spaces inside)"
            )
        if key in identities:
            raise ValueError(f"{source}: access key id {key} is given twice")
        identities[key] = Identity(key, secret)
    if not identities:
        raise ValueError(f"{source}: holds no API key; give ACCESS_KEY_ID:SECRET_ACCESS_KEY pairs")
    return identities


def server_identities(
    keys_file: str | None = None, environ: Mapping[str, str] | None = None
) -> dict[str, Identity]:
    """The keys clients sign with, apart from the credentials the server reaches S3 with (its credential
    chain: a role, IRSA, a profile): ``--api-keys-file`` or BATCH_TRANSFORM_API_KEYS_FILE, else
    BATCH_TRANSFORM_API_KEYS; only where neither is set, the server's own AWS_ACCESS_KEY_ID /
    AWS_SECRET_ACCESS_KEY, as earlier versions did."""
    env = os.environ if environ is None else environ
    path = keys_file or env.get(API_KEYS_FILE_VAR)
    if path:
        try:
            text = open(path, encoding="utf-8").read()  # noqa: SIM115 - read at once
        except OSError as e:
            raise ValueError(f"cannot read the API keys file {path}: {e.strerror}") from None
        return parse_api_keys(text, path)
    if env.get(API_KEYS_VAR):
        return parse_api_keys(env[API_KEYS_VAR], API_KEYS_VAR)
    return identities_from_env(env)


class SignatureError(Exception):
    """The request is not signed by a known identity. ``code``/``status`` as AWS sends them."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        self.code = code
        self.message = message
        self.status = status
        super().__init__(f"{code}: {message}")


def _incomplete(message: str) -> SignatureError:
    return SignatureError("IncompleteSignature", message)


def _invalid(message: str) -> SignatureError:
    return SignatureError("InvalidSignatureException", message)


MISMATCH = (
    "The request signature we calculated does not match the signature you provided. Check your AWS "
    "Secret Access Key and signing method. Consult the service documentation for details."
)
UNRECOGNIZED = "The security token included in the request is invalid."


def _one(headers: Mapping[str, list[str]], name: str) -> str | None:
    values = headers.get(name.lower())
    return ",".join(values) if values else None


def verify(
    method: str,
    path: str,
    headers: Mapping[str, list[str]],
    body: bytes,
    identities: Mapping[str, Identity],
    now: datetime | None = None,
    service: str = SERVICE,
) -> Identity:
    """The identity that signed the request, or ``SignatureError``.

    ``headers`` maps lower-case names to every value received; ``path`` is the request target as
    received (path and query).
    """
    authorization = _one(headers, "Authorization")
    if not authorization:
        raise SignatureError("MissingAuthenticationToken", "Missing Authentication Token", 403)
    algorithm, _, rest = authorization.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise _incomplete(f"Unsupported authorization algorithm; only {ALGORITHM} is accepted.")
    params: dict[str, str] = {}
    for part in rest.split(","):
        m = _PARAM.fullmatch(part)
        if m:
            params[m.group(1)] = m.group(2)
    missing = [p for p in ("Credential", "SignedHeaders", "Signature") if not params.get(p)]
    if missing:
        raise _incomplete(" ".join(f"Authorization header requires '{p}' parameter." for p in missing))
    scope = params["Credential"].split("/")
    if len(scope) != 5 or scope[4] != "aws4_request" or not all(scope):
        raise _incomplete(
            "Authorization header is malformed; the Credential is mal-formed; expecting "
            '"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request".'
        )
    access_key, scope_date, region, scope_service, _ = scope
    amz_date = _one(headers, AMZ_DATE)
    if not amz_date:
        raise _incomplete(f"Authorization header requires existence of a '{AMZ_DATE}' header.")
    try:
        signed_at = datetime.strptime(amz_date, SIGV4_TIMESTAMP).replace(tzinfo=UTC)
    except ValueError:
        raise _incomplete(f"{AMZ_DATE} must be in the ISO 8601 basic format YYYYMMDD'T'HHMMSS'Z'.") from None

    identity = identities.get(access_key)
    if identity is None:
        raise SignatureError("UnrecognizedClientException", UNRECOGNIZED)
    token = _one(headers, SECURITY_TOKEN)
    if token is not None and not (
        identity.session_token and hmac.compare_digest(token.encode(), identity.session_token.encode())
    ):
        raise SignatureError("UnrecognizedClientException", UNRECOGNIZED)
    if scope_service != service:
        raise _invalid(f"Credential should be scoped to correct service: '{service}'.")
    if scope_date != amz_date[:8]:
        raise _invalid(
            f"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: "
            f"'{scope_date}' != '{amz_date[:8]}', from '{amz_date}'."
        )
    _check_clock(signed_at, now or datetime.now(UTC))
    signed = [h.strip().lower() for h in params["SignedHeaders"].split(";")]
    if "host" not in signed:
        raise _invalid("'Host' must be a 'SignedHeader' in the AWS Authorization.")
    declared_hash = _one(headers, CONTENT_SHA256)
    if declared_hash is not None and not hmac.compare_digest(
        declared_hash.encode(), hashlib.sha256(body).hexdigest().encode()
    ):
        raise _invalid(f"The provided '{CONTENT_SHA256}' header does not match what was computed.")

    # botocore's signer over the request as received: exactly the headers the client signed.
    request = AWSRequest(
        method=method,
        url=f"http://{_one(headers, 'Host') or ''}{path}",
        headers={name: _one(headers, name) or "" for name in signed},
        data=body,
    )
    request.context["timestamp"] = amz_date
    signer = SigV4Auth(
        Credentials(identity.access_key_id, identity.secret_access_key, identity.session_token),
        service,
        region,
    )
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    if not hmac.compare_digest(expected.encode(), params["Signature"].encode()):
        raise _invalid(MISMATCH)
    return identity


def _check_clock(signed_at: datetime, now: datetime) -> None:
    skew = timedelta(seconds=MAX_SKEW_S)
    fmt = SIGV4_TIMESTAMP
    if signed_at < now - skew:
        raise _invalid(
            f"Signature expired: {signed_at.strftime(fmt)} is now earlier than "
            f"{(now - skew).strftime(fmt)} ({now.strftime(fmt)} - 5 min.)"
        )
    if signed_at > now + skew:
        raise _invalid(
            f"Signature not yet current: {signed_at.strftime(fmt)} is still later than "
            f"{(now + skew).strftime(fmt)} ({now.strftime(fmt)} + 5 min.)"
        )
