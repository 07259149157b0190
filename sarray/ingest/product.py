"""Where a SAFE product's files are read from: its folder or its zip, on local disk or at s3://.

xarray-sentinel reads a product through an fsspec filesystem: the manifest and the annotation
XML with ``fs.open``, and the measurement TIFFs by handing rasterio ``fs.unstrip_protocol(path)``.
fsspec's own zip URL (``zip://member``) is not a name GDAL opens, so the zip filesystem here
(:class:`GdalZipFileSystem`, fsspec's :class:`~fsspec.implementations.zip.ZipFileSystem` with
one method changed) names its members by GDAL's ``/vsizip/`` chain instead, and
``/vsizip//vsis3/bucket/key.zip/member`` for a zip in a bucket. The TIFFs are then read by
window, in place, by GDAL's own zip and S3 readers: a product is never unpacked, and a window
of a zip at s3:// fetches the byte ranges it needs (for a member stored without compression;
a deflated member is inflated from its start up to the window, as any deflate stream must be).

A product at ``s3://`` (a folder or a zip) is listed and opened through obstore's fsspec
filesystem (:class:`obstore.fsspec.FsspecStore`, the same object-store client as the archive's),
with the archive's ``AWS_*`` settings.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fsspec.implementations.zip import ZipFileSystem

from sarray.errors import IngestError, first_line


# Bytes per ranged read of a zip at s3:// (its directory, the XML members); obstore's 1 MiB
# default fetched 44x the whole 4.5 MB test product while opening it.
ZIP_READ_BUFFER = 64 * 1024


class _MetadataOnce:
    """Each metadata file (the manifest and the XML) read once: xarray-sentinel opens the
    manifest and a polarisation's annotation again for every group it opens (the swath, its
    calibration, its geolocation grid), which for a product at s3:// fetched them three times
    over (12.7 MB for a 4.6 MB product). The measurement TIFFs are never read here (GDAL reads
    them), so what is kept is a few MB of XML per product opened."""

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        import io

        if mode != "rb" or str(path).lower().endswith((".tiff", ".tif")):
            return super()._open(path, mode, **kwargs)  # type: ignore[misc]
        cache = self.__dict__.setdefault("_metadata", {})
        key = self._strip_protocol(path)  # type: ignore[attr-defined]
        if key not in cache:
            with super()._open(path, mode, **kwargs) as f:  # type: ignore[misc]
                cache[key] = f.read()
        return io.BytesIO(cache[key])


class GdalZipFileSystem(_MetadataOnce, ZipFileSystem):
    """fsspec's zip filesystem, whose members GDAL can open by the name it gives them
    (``unstrip_protocol``): ``/vsizip/{archive}/member``, where ``archive`` is GDAL's name of
    the zip itself (a local path, or ``/vsis3/bucket/key``)."""

    cachable = False  # one instance per product opened: its file handle is not shared

    def __init__(self, fo: Any, *, gdal_archive: str, **kwargs: Any) -> None:
        super().__init__(fo=fo, **kwargs)
        self.gdal_archive = gdal_archive

    def unstrip_protocol(self, name: str) -> str:
        # The archive in braces: GDAL then takes any name (not only *.zip) as the zip.
        return f"/vsizip/{{{self.gdal_archive}}}/{self._strip_protocol(name)}"


@dataclass(frozen=True, kw_only=True)
class SafeFiles:
    """One SAFE product's files.

    Attributes:
        given: the path or URL as the user gave it (what messages name).
        name: the product folder's name (``S1A_…SAFE``).
        fs: the fsspec filesystem xarray-sentinel reads it through; None for a local folder
            (xarray-sentinel's local path, unchanged).
        root: the product folder: inside ``fs``, or the local folder when ``fs`` is None.
        source: what the scene's checksum is of: the zip file or object, or the folder.
    """

    given: str
    name: str
    fs: Any
    root: str
    source: str

    @property
    def manifest(self) -> str:
        return posixpath.join(self.root, "manifest.safe") if self.root else "manifest.safe"

    def measurement_names(self) -> list[str]:
        """The file names in the product's ``measurement`` folder."""
        folder = posixpath.join(self.root, "measurement") if self.root else "measurement"
        if self.fs is None:
            p = Path(self.root) / "measurement"
            return sorted(f.name for f in p.glob("*")) if p.is_dir() else []
        try:
            return sorted(posixpath.basename(str(f).rstrip("/"))
                          for f in self.fs.ls(folder, detail=False))
        except FileNotFoundError:
            return []

    def xs_args(self) -> tuple[str, dict[str, Any]]:
        """The product argument and keyword arguments for xarray-sentinel's openers."""
        if self.fs is None:
            return self.root, {}
        return self.manifest, {"fs": self.fs}


def is_safe_name(text: str) -> bool:
    """A SAFE product by its name: ``*.SAFE``, its ``manifest.safe``, or ``*.SAFE.zip``."""
    name = posixpath.basename(str(text).rstrip("/")).upper()
    return name.endswith(".SAFE") or name == "MANIFEST.SAFE" or name.endswith(".SAFE.ZIP")


def gdal_reads_s3() -> None:
    """Point GDAL's /vsis3/ reader at the archive's S3 endpoint for the whole process.

    The measurement TIFFs are read when the dask graph runs, in dask's threads (or on Ray
    workers, which get the driver's ``AWS_*`` variables): ``rasterio.Env`` options are
    thread-local, so the settings go where GDAL reads them in every thread, the environment.
    They are the ``AWS_*`` names GDAL documents (``AWS_S3_ENDPOINT``, ``AWS_HTTPS``,
    ``AWS_VIRTUAL_HOSTING``), derived from ``AWS_ENDPOINT_URL``; ones already set are kept."""
    import os

    from sarray.archive.location import gdal_s3_options

    for k, v in gdal_s3_options().items():
        os.environ.setdefault(k, v)


def s3_filesystem() -> Any:
    """obstore's fsspec filesystem on the archive's S3 endpoint and credentials (a new one per
    product: its metadata reads are kept with it, see :class:`_MetadataOnce`)."""
    from obstore.fsspec import FsspecStore

    from sarray.archive.location import obstore_retries, s3_settings

    class _Store(_MetadataOnce, FsspecStore):
        cachable = False

    s3 = s3_settings()
    config = {k: v for k, v in {"endpoint": s3["endpoint_url"], "region": s3["region"]}.items() if v}
    client = {"allow_http": True} if s3["allow_http"] else {}
    return _Store("s3", config=config, client_options=client, retry_config=obstore_retries())


def s3_exists(fs: Any, key: str, url: str) -> bool:
    """Whether ``bucket/key`` exists; an endpoint that does not answer, or refused
    credentials, is one line naming the input ``url``."""
    try:
        return bool(fs.exists(key))
    except Exception as e:  # obstore's errors for the endpoint and the credentials
        raise IngestError(f"{url}: cannot reach the object ({first_line(e)})") from None


def _product_root_in_zip(zfs: ZipFileSystem, given: str) -> str:
    """The product folder inside a zip: the folder holding its one ``manifest.safe``."""
    found = [n for n in zfs.zip.namelist() if posixpath.basename(n) == "manifest.safe"
             and n.count("/") <= 1]
    if len(found) != 1:
        what = "no manifest.safe" if not found else f"{len(found)} manifest.safe files"
        raise IngestError(f"{given}: zip archive with {what} at its top: not one zipped "
                          "Sentinel-1 SAFE product")
    return posixpath.dirname(found[0])


def open_safe_files(text: str | Path) -> SafeFiles:
    """Locate a SAFE product: a local folder (or its ``manifest.safe``), a local ``.SAFE.zip``,
    or either at ``s3://bucket/key``.

    Raises:
        IngestError: missing product, a zip that is not one SAFE product, an unreadable zip.
    """
    import zipfile

    given = str(text)
    remote = given.startswith("s3://")
    if given.rstrip("/").endswith("manifest.safe"):
        given = posixpath.dirname(given.rstrip("/")) if remote else str(Path(given).parent)
    zipped = given.upper().endswith(".ZIP") or (not remote and Path(given).is_file()
                                                 and zipfile.is_zipfile(given))
    if not remote and not zipped:
        path = Path(given)
        if not (path / "manifest.safe").is_file():
            raise IngestError(f"{path}: not a Sentinel-1 SAFE product (no manifest.safe)")
        return SafeFiles(given=given, name=path.name, fs=None, root=str(path), source=str(path.resolve()))
    if remote:
        url = given.rstrip("/")
        bucket_key = url.removeprefix("s3://")
        fs = s3_filesystem()
        gdal_reads_s3()
        if not s3_exists(fs, bucket_key + ("" if zipped else "/manifest.safe"), url):
            what = "no such object" if zipped else "not a Sentinel-1 SAFE product (no manifest.safe)"
            raise IngestError(f"{url}: {what}")
        if not zipped:
            return SafeFiles(given=url, name=posixpath.basename(url), fs=fs, root=bucket_key, source=url)
        try:
            # Small reads: the zip's directory and each member's header are a few hundred bytes
            # at scattered offsets, and each read past the buffer is one ranged GET of it.
            zfs = GdalZipFileSystem(fs.open(bucket_key, "rb", buffer_size=ZIP_READ_BUFFER),
                                    gdal_archive=f"/vsis3/{bucket_key}")
        except (zipfile.BadZipFile, OSError, ValueError) as e:
            raise IngestError(f"{url}: not a readable zip archive ({first_line(e)})") from None
        root = _product_root_in_zip(zfs, url)
        return SafeFiles(given=url, name=root or posixpath.basename(url)[:-4], fs=zfs, root=root,
                         source=url)
    path = Path(given)
    if not path.is_file():
        raise IngestError(f"{path}: no such file")
    try:
        zfs = GdalZipFileSystem(str(path.resolve()), gdal_archive=str(path.resolve()))
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise IngestError(f"{path}: not a readable zip archive ({first_line(e)})") from None
    root = _product_root_in_zip(zfs, given)
    name = root or (path.name[:-4] if path.name.upper().endswith(".ZIP") else path.name)
    return SafeFiles(given=given, name=name, fs=zfs, root=root, source=str(path.resolve()))


def s3_folder_objects(url: str) -> list[str]:
    """Every object under a SAFE folder at ``s3://bucket/prefix`` (what its checksum is of)."""
    fs = s3_filesystem()
    prefix = url.removeprefix("s3://").rstrip("/")
    return sorted(f"s3://{k}" for k in fs.find(prefix))
