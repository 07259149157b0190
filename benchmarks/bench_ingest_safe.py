"""Peak memory of whole-product SAFE ingest: stripmap (SM), IW and EW SLC at full size.

Run: ``python benchmarks/bench_ingest_safe.py [--workdir DIR] [--products sm,iw,ew]``
(about 5 minutes and 6 GB of scratch disk). Writes ``benchmarks/results/bench_ingest_safe.json``.

Each product is a real SAFE's manifest and annotations (SM and EW from xarray-sentinel's test
data, copied to ``benchmarks/data/safe/`` with its licence; IW from ``../shared/data``) with
measurement TIFFs written at the annotation's full size: one-line strips of complex int16, as
in real products, filled with real complex SAR texture (SpaceNet 6 airborne SLC crops, random
flips), so that nothing compresses to nothing. Each ingest runs alone in a fresh interpreter
that reports its own peak RSS (VmHWM), and the stored values of one window are compared with
``xarray_sentinel.calibrate_intensity`` of the same window.

The EW fixture has no calibration annotation (xarray-sentinel ships none for EW): the bench
writes one where the EW manifest names it, from the real IW1 calibration annotation of the IW
product adapted to the EW swath's geometry (its lines, samples, times and header; the LUT
values are the IW's, resampled across the swath). So all three products are calibrated to
sigma0; the EW LUT's values are borrowed, which the memory figure does not depend on, and the
values check compares with xarray-sentinel on that same annotation.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS_DIR, environment, write_results  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
FIXTURES = REPO / "benchmarks" / "data" / "safe"
PRODUCTS = {
    # name: (source SAFE folder, swath, polarisations, calibration)
    "sm": (FIXTURES / "S1A_S3_SLC__1SDV_20210401T152855_20210401T152914_037258_04638E_6001.SAFE",
           "S3", ("VH",), "sigma0"),
    "iw": (DATA / "sentinel1/safe/S1B_IW_SLC__1SDV_20210401T052622_20210401T052650_026269_032297_EFA4.SAFE",
           "IW1", ("VV", "VH"), "sigma0"),
    "ew": (FIXTURES / "S1A_EW_SLC__1SDH_20210403T122536_20210403T122630_037286_046484_8152.SAFE",
           "EW1", ("HH",), "sigma0"),
}
LIMIT_MIB = 2048


def _texture(rng: np.random.Generator) -> list[np.ndarray]:
    """Complex SAR crops (SpaceNet 6 airborne quad-pol SLC), scaled to int16 DN levels."""
    import rasterio

    out = []
    for pol in ("hh", "hv", "vh", "vv"):
        with rasterio.open(DATA / f"airborne/spacenet6-capella/sar_{pol}.tif") as ds:
            z = ds.read(1).astype(np.complex64)
        z = np.nan_to_num(z) * (300.0 / max(float(np.median(np.abs(z))), 1e-12))
        out.append(np.clip(z.real, -32000, 32000) + 1j * np.clip(z.imag, -32000, 32000))
    return out


IW_CALIBRATION = next((PRODUCTS["iw"][0] / "annotation" / "calibration").glob("calibration-*iw1*vv*.xml"),
                      None)


def write_calibration_for(annotation: Path, target: Path, template: Path) -> None:
    """A calibration annotation for ``annotation``'s swath at ``target``: ``template``'s
    structure and LUT values, the swath's own header, lines, samples and times."""
    import datetime as dt
    import xml.etree.ElementTree as ET

    ann = ET.parse(annotation).getroot()
    tree = ET.parse(template)
    root = tree.getroot()
    for tag in ("missionId", "productType", "polarisation", "mode", "swath", "startTime",
                "stopTime", "absoluteOrbitNumber", "missionDataTakeId", "imageNumber"):
        src, dst = ann.find(f"adsHeader/{tag}"), root.find(f"adsHeader/{tag}")
        if src is not None and dst is not None:
            dst.text = src.text
    lines = int(ann.findtext("imageAnnotation/imageInformation/numberOfLines"))
    samples = int(ann.findtext("imageAnnotation/imageInformation/numberOfSamples"))
    t0 = dt.datetime.fromisoformat(ann.findtext("imageAnnotation/imageInformation/productFirstLineUtcTime"))
    dtl = float(ann.findtext("imageAnnotation/imageInformation/azimuthTimeInterval"))
    vlist = root.find("calibrationVectorList")
    first = vlist.find("calibrationVector")
    pixels_t = np.array(first.findtext("pixel").split(), float)
    pixels = np.unique(np.r_[np.arange(0, samples, 40), samples - 1])
    rel = pixels / (samples - 1) * pixels_t[-1]
    for v in list(vlist):
        vlist.remove(v)
    rows = np.unique(np.r_[np.linspace(0, lines - 1, 24).round().astype(int)])
    for line in rows:
        v = ET.fromstring(ET.tostring(first))
        v.find("azimuthTime").text = (t0 + dt.timedelta(seconds=float(line) * dtl)).isoformat()
        v.find("line").text = str(int(line))
        px = v.find("pixel")
        px.text, px.attrib["count"] = " ".join(str(int(p)) for p in pixels), str(len(pixels))
        for lut in ("sigmaNought", "betaNought", "gamma", "dn"):
            el = v.find(lut)
            vals = np.interp(rel, pixels_t, np.array(first.findtext(lut).split(), float))
            el.text, el.attrib["count"] = " ".join(f"{x:.6e}" for x in vals), str(len(pixels))
        vlist.append(v)
    vlist.attrib["count"] = str(len(rows))
    target.parent.mkdir(parents=True, exist_ok=True)
    tree.write(target, encoding="UTF-8", xml_declaration=True)


def build_product(name: str, work: Path, seed: int = 0) -> Path:
    """A copy of the product's XML with full-size measurement TIFFs of real texture."""
    import rasterio
    from rasterio.windows import Window

    src, swath, pols, _ = PRODUCTS[name]
    dst = work / src.name
    if dst.exists():
        return dst
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.tiff", "*.png", "preview", "support"))
    rng = np.random.default_rng(seed)
    tex = _texture(rng)
    for xml in sorted((dst / "annotation").glob("*.xml")):
        parts = xml.stem.split("-")
        if parts[1].upper() != swath.upper() or parts[3].upper() not in pols:
            xml.unlink()
            for cal in (dst / "annotation" / "calibration").glob(f"*{xml.stem}*"):
                cal.unlink()
            continue
        text = xml.read_text()
        lines = int(text.split("<numberOfLines>")[1].split("<")[0])
        samples = int(text.split("<numberOfSamples>")[1].split("<")[0])
        cal = dst / "annotation" / "calibration" / f"calibration-{xml.name}"
        if PRODUCTS[name][3] != "none" and not cal.is_file():
            write_calibration_for(xml, cal, IW_CALIBRATION)  # the EW fixture has none
        (dst / "measurement").mkdir(exist_ok=True)
        tif = dst / "measurement" / f"{xml.stem}.tiff"
        with rasterio.open(tif, "w", driver="GTiff", height=lines, width=samples, count=1,
                           dtype="complex_int16", blockysize=1, BIGTIFF="YES") as ds:
            band = 200
            for r in range(0, lines, band):
                row = np.empty((band, samples + 200), np.complex64)
                for c in range(0, samples, 200):
                    t = tex[rng.integers(len(tex))]
                    row[:, c : c + 200] = t[:: rng.choice([-1, 1]), :: rng.choice([-1, 1])]
                h = min(band, lines - r)
                ds.write(row[None, :h, :samples], window=Window(0, r, samples, h))
        print(f"{name}: wrote {tif.name} {lines} x {samples}", file=sys.stderr)
    return dst


_CHILD = """
import sys, time, warnings
warnings.simplefilter("ignore")
from sarray.ingest.config import IngestConfig
from sarray.ingest.run import ingest
t0 = time.perf_counter()
(r,) = ingest([{safe!r}], {out!r}, IngestConfig(swath={swath!r}, pols={pols!r}, calibration={cal!r}))
hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]
print(r.scene_id, time.perf_counter() - t0, hwm)
"""


def measure(name: str, safe: Path, work: Path) -> dict:
    _, swath, pols, cal = PRODUCTS[name]
    out = work / f"{name}.zarr"
    shutil.rmtree(out, ignore_errors=True)
    code = _CHILD.format(safe=str(safe), out=str(out), swath=swath, pols=pols, cal=cal)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    scene_id, secs, kib = res.stdout.split()[-3:]
    check = _check_values(safe, out, scene_id, swath, pols[0], cal)
    from sarray.archive.store import Archive

    shape = Archive(out).record(scene_id).shape
    shutil.rmtree(out, ignore_errors=True)
    mpx = shape[0] * shape[1] * shape[2] / 1e6
    return {"product": safe.name, "swath": swath, "pols": list(pols), "calibration": cal,
            "shape": list(shape), "mpx": mpx, "seconds": float(secs), "mpx_per_s": mpx / float(secs),
            "peak_rss_mib": int(kib) / 1024, "values_check": check}


def _check_values(safe: Path, out: Path, scene_id: str, swath: str, pol: str, cal: str) -> dict:
    """Max relative difference to xarray-sentinel on a 512 x 2048 window in the middle."""
    import xarray as xr
    import xarray_sentinel as xs

    from sarray.archive.store import Archive

    ds = xr.open_dataset(str(safe), engine="sentinel-1", group=f"{swath}/{pol}",
                         chunks={"line": 2048, "pixel": 2048, "azimuth_time": 2048, "slant_range_time": 2048})
    meas = ds["measurement"]
    ydim, xdim = meas.dims
    r0, c0 = meas.shape[0] // 2, meas.shape[1] // 2
    win = meas.isel({ydim: slice(r0, r0 + 512), xdim: slice(c0, c0 + 2048)})
    if cal == "none":
        want = np.abs(win.values).astype(np.float32)
    else:
        lut = xs.open_sentinel1_dataset(str(safe), group=f"{swath}/{pol}/calibration")["sigmaNought"]
        want = xs.calibrate_intensity(win, lut).values.astype(np.float32)
    scene = Archive(out).open_scene(scene_id)["backscatter"]
    got = scene.isel(pol=0, y=slice(r0, r0 + 512), x=slice(c0, c0 + 2048)).values
    rel = float(np.nanmax(np.abs(got - want) / np.maximum(np.abs(want), 1e-30)))
    return {"window": [r0, c0, 512, 2048], "max_rel_diff": rel, "rtol": 1e-6, "ok": rel <= 1e-6}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", type=Path, default=None)
    p.add_argument("--products", default="sm,iw,ew")
    p.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = p.parse_args(argv)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="sarray-bench-safe-"))
    work.mkdir(parents=True, exist_ok=True)
    results = {}
    try:
        for name in args.products.split(","):
            t0 = time.perf_counter()
            safe = build_product(name, work)
            print(f"{name}: built in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
            results[name] = measure(name, safe, work)
            print(f"{name}: {json.dumps(results[name])}", file=sys.stderr)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    result = {
        "environment": environment("cpu"),
        "products": results,
        "targets": {"peak_rss_mib_max": LIMIT_MIB, "values_rtol": 1e-6},
        "met": all(r["peak_rss_mib"] < LIMIT_MIB and r["values_check"]["ok"] for r in results.values()),
    }
    path = write_results("bench_ingest_safe", result, args.out)
    print(json.dumps({k: {f: v[f] for f in ("shape", "peak_rss_mib", "seconds", "values_check")}
                      for k, v in results.items()}, indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
