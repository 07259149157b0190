"""Where an archive lives: a local folder or ``s3://bucket/prefix`` on any S3 API.

One :class:`Location` gives both views the archive needs of the same place:

- an Icechunk ``Storage`` for a repository under it (the transactional Zarr store), and
- a small object API (get, put, list, delete) for the few plain objects sarray keeps beside
  the repositories (the archive marker and the commit intents): the file system for a local
  path, ``obstore`` for S3.

S3 is configured the standard way, from the environment, read when a store is opened and never
stored: ``AWS_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL_S3``), ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_REGION`` / ``AWS_DEFAULT_REGION`` and
``AWS_ALLOW_HTTP`` (``true`` for a plain-http endpoint such as a local MinIO or moto). A URL
that embeds credentials is refused, so credentials can never reach attributes, provenance or
logs: the archive only ever records :attr:`Location.url`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from sarray.errors import ArchiveError, ConfigError

_TRUE = ("1", "true", "yes", "on")


def _quiet_icechunk() -> None:
    """Icechunk's Rust logs go to stderr; keep only errors unless the user asks for more."""
    import icechunk

    if "ICECHUNK_LOG" not in os.environ:
        icechunk.set_logs_filter("error")


@dataclass(frozen=True)
class Location:
    """A parsed archive location (hashable, picklable: it holds no client and no secret).

    Args:
        scheme: ``file`` or ``s3``.
        root: the absolute local path (``file``), or the bucket (``s3``).
        prefix: key prefix inside ``root``, without leading or trailing ``/`` ("" for the root).
    """

    scheme: str
    root: str
    prefix: str = ""

    # -- parsing -------------------------------------------------------------------------------
    @classmethod
    def parse(cls, text: str | os.PathLike[str] | Location) -> Location:
        """A local path (absolute or relative) or ``s3://bucket/prefix``.

        Raises:
            ConfigError: an unsupported scheme, a URL with credentials, query or fragment, or
                an S3 URL without a bucket.
        """
        if isinstance(text, Location):
            return text
        raw = os.fspath(text)
        if "://" not in raw:
            if not raw:
                raise ConfigError("`archive` is empty: give a folder such as A.zarr or s3://bucket/A")
            return cls("file", str(Path(raw).expanduser().absolute()), "")
        u = urlparse(raw)
        if u.scheme == "file":
            return cls("file", str(Path(u.path).absolute()), "")
        if u.scheme != "s3":
            raise ConfigError(
                f"`archive` ({raw!r}): scheme {u.scheme!r} is not supported; use a local path "
                "or s3://bucket/prefix"
            )
        if u.username or u.password or "@" in u.netloc:
            raise ConfigError(
                "`archive`: the URL embeds credentials; give them as AWS_ACCESS_KEY_ID / "
                "AWS_SECRET_ACCESS_KEY instead (they are never written into the archive)"
            )
        if u.query or u.fragment or u.params:
            raise ConfigError(f"`archive` ({raw!r}): no query or fragment allowed; use s3://bucket/prefix")
        if not u.netloc:
            raise ConfigError(f"`archive` ({raw!r}): no bucket; use s3://bucket/prefix")
        prefix = "/".join(p for p in u.path.split("/") if p)
        if any(p in (".", "..") for p in prefix.split("/")):
            raise ConfigError(f"`archive` ({raw!r}): '.' and '..' are not allowed in the prefix")
        return cls("s3", u.netloc, prefix)

    @property
    def is_local(self) -> bool:
        return self.scheme == "file"

    @property
    def url(self) -> str:
        """The location as users write it (a local path, or ``s3://bucket/prefix``)."""
        if self.is_local:
            return self.root
        return f"s3://{self.root}/{self.prefix}" if self.prefix else f"s3://{self.root}"

    @property
    def name(self) -> str:
        """The last path component (``A.zarr`` for ``/data/A.zarr`` or ``s3://b/x/A.zarr``)."""
        return Path(self.root).name if self.is_local else (self.prefix.rsplit("/", 1)[-1] or self.root)

    def __str__(self) -> str:
        return self.url

    def child(self, *parts: str) -> Location:
        """The location of ``parts`` under this one."""
        rel = "/".join(p.strip("/") for p in parts if p)
        if self.is_local:
            return Location("file", str(Path(self.root, rel)), "")
        return Location("s3", self.root, "/".join(p for p in (self.prefix, rel) if p))

    @property
    def local_path(self) -> Path:
        if not self.is_local:
            raise ArchiveError(f"{self.url}: not a local path")
        return Path(self.root)

    # -- Icechunk ------------------------------------------------------------------------------
    def icechunk_storage(self) -> Any:
        """The Icechunk storage of a repository at this location."""
        import icechunk

        _quiet_icechunk()
        if self.is_local:
            return icechunk.local_filesystem_storage(self.root)
        s3 = s3_settings()
        return icechunk.s3_storage(
            bucket=self.root, prefix=self.prefix or None, region=s3["region"],
            endpoint_url=s3["endpoint_url"], allow_http=s3["allow_http"],
            force_path_style=s3["endpoint_url"] is not None, from_env=True,
        )

    # -- plain objects ---------------------------------------------------------------------------
    def object_store(self) -> Any:
        """An ``obstore`` S3 store rooted at this location (local locations use the file system
        directly in the methods below)."""
        from obstore.store import S3Store

        if self.is_local:
            raise ArchiveError(f"{self.url}: a local path has no object store")
        s3 = s3_settings()
        kw: dict[str, Any] = {"client_options": {"allow_http": s3["allow_http"]},
                              "retry_config": obstore_retries()}
        if s3["endpoint_url"]:
            kw["endpoint"] = s3["endpoint_url"]
            kw["virtual_hosted_style_request"] = False
        if s3["region"]:
            kw["region"] = s3["region"]
        return S3Store(self.root, prefix=self.prefix or None, **kw)

    def read_bytes(self, key: str) -> bytes | None:
        """The object ``key`` under this location, or None if there is none."""
        if self.is_local:
            p = Path(self.root, key)
            try:
                return p.read_bytes()
            except (FileNotFoundError, NotADirectoryError):
                return None
        import obstore

        try:
            return bytes(obstore.get(self.object_store(), key).bytes())
        except FileNotFoundError:
            return None

    def write_bytes(self, key: str, data: bytes) -> None:
        """Write (replace) the object ``key`` atomically."""
        if self.is_local:
            p = Path(self.root, key)
            p.parent.mkdir(parents=True, exist_ok=True)
            tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, p)
            return
        import obstore

        obstore.put(self.object_store(), key, data)

    def delete(self, key: str) -> None:
        """Delete the object ``key`` (no error if it is already gone)."""
        if self.is_local:
            Path(self.root, key).unlink(missing_ok=True)
            return
        import obstore

        with contextlib.suppress(FileNotFoundError):
            obstore.delete(self.object_store(), key)

    def list_children(self, key: str) -> list[str]:
        """Names directly under ``key`` (objects and prefixes), sorted."""
        if self.is_local:
            p = Path(self.root, key)
            return sorted(c.name for c in p.iterdir()) if p.is_dir() else []
        import obstore

        res = obstore.list_with_delimiter(self.object_store(), key.rstrip("/") + "/")
        names = [o["path"].rsplit("/", 1)[-1] for o in res["objects"]]
        names += [c.rstrip("/").rsplit("/", 1)[-1] for c in res["common_prefixes"]]
        return sorted(names)

    def iter_keys(self, key: str = "") -> Iterator[str]:
        """Every object key under ``key`` (recursively), relative to this location."""
        if self.is_local:
            base = Path(self.root)
            top = base / key
            if top.is_file():
                yield key
                return
            for dirpath, _, files in os.walk(top):
                for f in files:
                    yield str(Path(dirpath, f).relative_to(base))
            return
        import obstore

        prefix = key.rstrip("/") + "/" if key else None
        for batch in obstore.list(self.object_store(), prefix=prefix):
            for o in batch:
                yield o["path"]

    def delete_tree(self, key: str) -> None:
        """Delete everything under ``key`` (a repository, say)."""
        if self.is_local:
            import shutil

            shutil.rmtree(Path(self.root, key), ignore_errors=True)
            return
        import obstore

        store = self.object_store()
        keys = list(self.iter_keys(key))
        for i in range(0, len(keys), 1000):
            obstore.delete(store, keys[i : i + 1000])


def s3_max_tries() -> int:
    """Tries per request: :data:`sarray.config.S3_MAX_TRIES`, or ``SARRAY_S3_MAX_TRIES``."""
    from sarray.config import S3_MAX_TRIES

    raw = os.environ.get("SARRAY_S3_MAX_TRIES")
    if raw is None:
        return S3_MAX_TRIES
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError(f"SARRAY_S3_MAX_TRIES ({raw!r}) must be a whole number of tries, 1 or more")
    return int(raw)


def repository_config() -> Any:
    """Icechunk's configuration for every repository sarray opens or creates: its own retries
    with backoff (:data:`sarray.config.S3_MAX_TRIES` and the backoffs)."""
    import icechunk

    from sarray.config import S3_INITIAL_BACKOFF_MS, S3_MAX_BACKOFF_MS

    retries = icechunk.StorageRetriesSettings(max_tries=s3_max_tries(),
                                              initial_backoff_ms=S3_INITIAL_BACKOFF_MS,
                                              max_backoff_ms=S3_MAX_BACKOFF_MS)
    return icechunk.RepositoryConfig(storage=icechunk.StorageSettings(retries=retries))


def obstore_retries() -> dict[str, Any]:
    """obstore's ``retry_config`` with the same tries and backoffs as Icechunk's."""
    from datetime import timedelta

    from sarray.config import S3_INITIAL_BACKOFF_MS, S3_MAX_BACKOFF_MS

    tries = s3_max_tries()
    waits = [min(S3_INITIAL_BACKOFF_MS * 2**i, S3_MAX_BACKOFF_MS) for i in range(tries - 1)]
    return {"max_retries": tries - 1,
            "backoff": {"init_backoff": timedelta(milliseconds=S3_INITIAL_BACKOFF_MS),
                        "max_backoff": timedelta(milliseconds=S3_MAX_BACKOFF_MS), "base": 2.0},
            # obstore stops retrying after this long in all: the sum of the waits, and a margin
            "retry_timeout": timedelta(milliseconds=sum(waits) + 10_000)}


def is_s3_url(text: str | os.PathLike[str]) -> bool:
    """Whether ``text`` names an object store location (``s3://...``)."""
    return os.fspath(text).startswith("s3://")


def s3_destination(url: str, *, what: str) -> Location:
    """The location of an ``s3://bucket/key`` a command writes (``what``: its option, for the
    messages), checked before any work: the bucket exists and the endpoint answers.

    Raises:
        ConfigError: not an S3 URL with a key; ArchiveError: no such bucket, refused
            credentials, or an endpoint that does not answer (obstore's own retries first).
    """
    import obstore

    loc = Location.parse(url)
    if loc.is_local or not loc.prefix:
        raise ConfigError(f"`{what}` ({url!r}) must be s3://bucket/key")
    try:
        parent = loc.prefix.rsplit("/", 1)[0] if "/" in loc.prefix else ""
        obstore.list_with_delimiter(Location("s3", loc.root, "").object_store(), parent or None)
    except Exception as e:  # obstore's errors: no such bucket, credentials, endpoint
        raise ArchiveError(f"`{what}` ({url}): cannot write there ({_s3_reason(e)})") from None
    return loc


def _s3_reason(e: BaseException) -> str:
    """The part of an obstore error a user acts on: the bucket, the credentials or the endpoint."""
    from sarray.errors import first_line

    text = str(e)
    for marker, reason in (("NoSuchBucket", "no such bucket"),
                           ("InvalidAccessKeyId", "the credentials were refused"),
                           ("SignatureDoesNotMatch", "the credentials were refused"),
                           ("AccessDenied", "access denied")):
        if marker in text:
            return reason
    if "retries" in text:  # obstore gave up on the connection
        return (f"the endpoint {s3_endpoint() or 'AWS S3'} does not answer; check "
                "AWS_ENDPOINT_URL and the network")
    return first_line(e)


def storage_failure(e: BaseException) -> str | None:
    """One line for an error of the object store's clients (Icechunk's, obstore's) that
    reached the command, naming the endpoint; None for any other error."""
    module = type(e).__module__ or ""
    if not module.startswith(("icechunk", "obstore")):
        return None
    endpoint = s3_endpoint() or "AWS S3"
    text = str(e)
    gone = any(k in text for k in ("dispatch failure", "error sending request", "connection",
                                   "timed out", "retries"))
    what = "stopped answering" if gone else f"failed ({_s3_reason(e)})"
    return (f"the object store at {endpoint} {what}, after its retries; nothing partial is "
            "listed: rerun the same command (translate resumes from its last commit)")


def upload_file(path: Path, loc: Location, *, what: str) -> str:
    """Upload a finished local file to ``loc`` (one PUT, or obstore's multipart upload for a
    large one: the object appears whole or not at all); returns its URL."""
    import obstore

    bucket = Location("s3", loc.root, "")
    try:
        obstore.put(bucket.object_store(), loc.prefix, path)
    except Exception as e:
        raise ArchiveError(f"`{what}` ({loc.url}): the upload failed ({_s3_reason(e)}); "
                           "nothing was written there") from None
    return loc.url


def s3_endpoint() -> str | None:
    """The S3 endpoint of the standard AWS variables (None: AWS itself)."""
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


def s3_settings() -> dict[str, Any]:
    """S3 endpoint, region and http switch from the standard AWS environment variables."""
    endpoint = s3_endpoint()
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None
    allow_http = os.environ.get("AWS_ALLOW_HTTP", "").lower() in _TRUE
    if endpoint and endpoint.startswith("http://") and not allow_http:
        raise ConfigError(
            f"AWS_ENDPOINT_URL ({endpoint}) is plain http: set AWS_ALLOW_HTTP=true to use it"
        )
    return {"endpoint_url": endpoint, "region": region, "allow_http": allow_http}


def gdal_s3_options() -> dict[str, str]:
    """GDAL configuration that points its /vsis3/ reader (``rasterio.open("s3://...")``) at the
    same S3 endpoint as sarray's archive (``AWS_ENDPOINT_URL``, e.g. MinIO or moto)."""
    from urllib.parse import urlparse

    s3 = s3_settings()
    if not s3["endpoint_url"]:
        return {}
    u = urlparse(s3["endpoint_url"])
    return {"AWS_S3_ENDPOINT": u.netloc, "AWS_HTTPS": "NO" if u.scheme == "http" else "YES",
            "AWS_VIRTUAL_HOSTING": "FALSE"}


def s3_object_sha256(url: str) -> str:
    """SHA-256 of an ``s3://bucket/key`` object, streamed."""
    import hashlib

    import obstore

    bucket, _, key = url.removeprefix("s3://").partition("/")
    h = hashlib.sha256()
    for chunk in obstore.get(Location("s3", bucket, "").object_store(), key).stream():
        h.update(bytes(chunk))
    return h.hexdigest()
