"""A small object store that speaks OCI Object Storage's REST API, for the sandbox and tests.

It answers exactly what the hub's OCI adapter asks through the oci SDK: the namespace,
list objects (prefix, delimiter, start and limit paging), get, put and
renameObject. Objects are files under `root/<namespace>/<bucket>/`, streamed both ways.
A request must carry an OCI signature (`Authorization: Signature ...`); the signature
itself is not verified, but when `key_id` is set the key it names must be that one, so
that a wrong key is refused as OCI refuses it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import uuid
from email.utils import formatdate
from pathlib import Path
from urllib.parse import quote, unquote

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

DEFAULT_PAGE = 1000
_KEY_ID = re.compile(r'keyId="([^"]*)"')


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(
        {"code": code, "message": message},
        status_code=status,
        headers={"opc-request-id": uuid.uuid4().hex},
    )


def _file_name(object_name: str) -> str:
    """Objects may hold "/" in their names; on disk each bucket stays one flat folder,
    and unquote() gives the name back."""
    escaped = object_name.replace("%", "%25").replace("/", "%2F")
    return escaped.replace(".", "%2E") if escaped in {".", ".."} else escaped


class ObjectStoreFiles:
    """Where the store keeps its buckets, for the app and for whoever fills it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.uploads = root / ".uploads"

    def bucket(self, namespace: str, bucket: str) -> Path:
        return self.root / quote(namespace, safe="") / quote(bucket, safe="")

    def create_bucket(self, namespace: str, bucket: str) -> Path:
        path = self.bucket(namespace, bucket)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def object_path(self, namespace: str, bucket: str, object_name: str) -> Path:
        return self.bucket(namespace, bucket) / _file_name(object_name)


def create_object_store_app(root: Path, *, key_id: str | None = None) -> Starlette:
    files = ObjectStoreFiles(root)

    def refused(request: Request) -> JSONResponse | None:
        authorization = request.headers.get("authorization", "")
        if not authorization.startswith("Signature "):
            return _error(
                401,
                "NotAuthenticated",
                "The required information to complete authentication was not provided.",
            )
        match = _KEY_ID.search(authorization)
        if key_id is not None and (match is None or match.group(1) != key_id):
            return _error(
                401,
                "NotAuthenticated",
                "The required information to complete "
                "authentication was not provided or was incorrect.",
            )
        return None

    def bucket_of(request: Request) -> Path | JSONResponse:
        namespace = request.path_params["namespace"]
        bucket = request.path_params["bucket"]
        path = files.bucket(namespace, bucket)
        if not path.is_dir():
            return _error(
                404,
                "BucketNotFound",
                f"Either the bucket named '{bucket}' does not exist in the namespace "
                f"'{namespace}' or you are not authorized to access it",
            )
        return path

    def object_missing(request: Request, name: str) -> JSONResponse:
        bucket = request.path_params["bucket"]
        return _error(
            404,
            "ObjectNotFound",
            f"The object '{name}' was not found in the bucket '{bucket}'",
        )

    def namespace(request: Request) -> Response:
        if (refusal := refused(request)) is not None:
            return refusal
        names = sorted(p.name for p in root.iterdir() if p.is_dir() and p != files.uploads)
        return JSONResponse(unquote(names[0]) if names else "sandbox")

    def list_objects(request: Request) -> Response:
        if (refusal := refused(request)) is not None:
            return refusal
        bucket = bucket_of(request)
        if isinstance(bucket, JSONResponse):
            return bucket
        query = request.query_params
        prefix = query.get("prefix", "")
        start = query.get("start", "")
        end = query.get("end")
        delimiter = query.get("delimiter")
        limit = int(query.get("limit", DEFAULT_PAGE))
        names = sorted(
            name
            for entry in bucket.iterdir()
            if entry.is_file()
            and (name := unquote(entry.name)).startswith(prefix)
            and name >= start
            and (end is None or name < end)
        )
        objects: list[dict[str, object]] = []
        prefixes: set[str] = set()
        next_start = None
        for name in names:
            rest = name[len(prefix) :]
            if delimiter and delimiter in rest:
                prefixes.add(prefix + rest.split(delimiter, 1)[0] + delimiter)
                continue
            if len(objects) == limit:
                next_start = name
                break
            summary: dict[str, object] = {"name": name}
            if "size" in query.get("fields", ""):
                summary["size"] = (bucket / _file_name(name)).stat().st_size
            objects.append(summary)
        body: dict[str, object] = {"objects": objects, "prefixes": sorted(prefixes)}
        if next_start is not None:
            body["nextStartWith"] = next_start
        return JSONResponse(body)

    def get_object(request: Request) -> Response:
        if (refusal := refused(request)) is not None:
            return refusal
        bucket = bucket_of(request)
        if isinstance(bucket, JSONResponse):
            return bucket
        name = request.path_params["name"]
        path = bucket / _file_name(name)
        if not path.is_file():
            return object_missing(request, name)
        return FileResponse(path, media_type="application/octet-stream")

    async def put_object(request: Request) -> Response:
        if (refusal := refused(request)) is not None:
            return refusal
        bucket = bucket_of(request)
        if isinstance(bucket, JSONResponse):
            return bucket
        name = request.path_params["name"]
        files.uploads.mkdir(parents=True, exist_ok=True)
        # Received beside the bucket and moved in whole: a cut upload is no object.
        partial = files.uploads / uuid.uuid4().hex
        md5 = hashlib.md5(usedforsecurity=False)
        expected = request.headers.get("content-length")
        received = 0
        try:
            with partial.open("wb") as handle:
                async for chunk in request.stream():
                    handle.write(chunk)
                    md5.update(chunk)
                    received += len(chunk)
        except ClientDisconnect:
            partial.unlink(missing_ok=True)
            return Response(status_code=400)
        if expected is not None and int(expected) != received:
            partial.unlink(missing_ok=True)
            return _error(400, "InvalidContentLength", "The body is shorter than Content-Length")
        os.replace(partial, bucket / _file_name(name))
        return Response(
            headers={
                "etag": uuid.uuid4().hex,
                "opc-content-md5": base64.b64encode(md5.digest()).decode(),
                "last-modified": formatdate(usegmt=True),
            }
        )

    async def rename_object(request: Request) -> Response:
        if (refusal := refused(request)) is not None:
            return refusal
        bucket = bucket_of(request)
        if isinstance(bucket, JSONResponse):
            return bucket
        details = json.loads(await request.body())
        source, new_name = details["sourceName"], details["newName"]
        source_path = bucket / _file_name(source)
        if not source_path.is_file():
            return object_missing(request, source)
        os.replace(source_path, bucket / _file_name(new_name))
        return Response()

    return Starlette(
        routes=[
            Route("/n", namespace, methods=["GET"]),
            Route("/n/", namespace, methods=["GET"]),
            Route("/n/{namespace}/b/{bucket}/o", list_objects, methods=["GET"]),
            Route("/n/{namespace}/b/{bucket}/o/{name:path}", get_object, methods=["GET"]),
            Route("/n/{namespace}/b/{bucket}/o/{name:path}", put_object, methods=["PUT"]),
            Route(
                "/n/{namespace}/b/{bucket}/actions/renameObject", rename_object, methods=["POST"]
            ),
        ]
    )


def write_api_signing_key(path: Path) -> str:
    """A throwaway RSA API signing key written to `path`; its fingerprint, as OCI shows it."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    digest = hashlib.md5(public, usedforsecurity=False).hexdigest()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))
