"""Assembly CPU per output chunk, outside Ray: blend, speckle, consistency and statistics.

The bundled Sentinel-1 sample is planned as the engine plans it (x4, default chunks) and every
chunk is assembled from stand-in predictions (the input upsampled times exponential speckle)
the way an assembler does (`sarray.engine.work.blend_chunk_of`, then `block_stats`), in one
process with the cell cache. Prints the median thread CPU per chunk over 5 passes; with `prof`,
a cProfile of one pass instead (sorted by ``tottime``, or by the pstats key given after it).
Issue 9's remaining gap is this figure (about 26 ms here).

Run: python benchmarks/prof_assembly.py [prof [cumulative]]
"""
import sys, tempfile, time, cProfile, pstats
import numpy as np
from pathlib import Path
from sarray.ingest.run import ingest
from sarray.archive.store import Archive
from sarray.engine.translate import TranslateConfig
from sarray.engine.plan import ScenePlan
from sarray.engine.output import SceneInfo, replica_meta
from sarray.engine import work
from sarray.archive.write import block_stats
from sarray.stitch.speckle import single_look

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample" / "Spain_7370579_S1Hand.tif"
a = Path(tempfile.mkdtemp(prefix="sarray-prof-")) / "a.zarr"
ingest([SAMPLE], a)
arch = Archive(a)
sid = arch.find()[0].scene_id
ds = arch.open_scene(sid)
cfg = TranslateConfig(model="tiny-random", scale=4)
spec = cfg.tile_spec()
shape_in = ds["backscatter"].shape[1:]
plan = ScenePlan.build(scene_id=sid, out_id="o", shape_in=shape_in, spec=spec)
info = SceneInfo(archive_url=str(a), scene_id=sid, snapshot=ds.encoding["snapshot"], out_id="o", plan=plan,
                 shape_out=(shape_in[0]*4, shape_in[1]*4), spec=spec, consistency="multilook",
                 units=ds.attrs["units"], quantity=ds.attrs.get("quantity","unknown"), meta=replica_meta(dict(ds.attrs)),
                 output="speckled", speckle=single_look().to_dict(), seed=0, job="j")
rng = np.random.default_rng(0)
outs = {}
t0 = time.perf_counter()
for k, t in plan.tiles.items():
    x = work.read_tiles(work.pixels_of(info), [t])
    pred = np.repeat(np.repeat(x, 4, -2), 4, -1)[0] * rng.exponential(1, (2, x.shape[-2]*4, x.shape[-1]*4)).astype(np.float32)
    outs[k] = work.tile_output(t, x[0], pred, 4)
print("read per tile ms", 1000*(time.perf_counter()-t0)/len(plan.tiles), "tiles", len(plan.tiles), "tile shape", x.shape)
def run():
    work._SPECKLE.clear(); work.cell_cache.cache_clear() if hasattr(work.cell_cache, "cache_clear") else None
    ts = []
    for key in plan.todo:
        c0 = time.thread_time()
        v = work.blend_chunk_of(info, key, [outs[n][0] for n in plan.neighbours(key)], tile_input=outs[key][1])
        block_stats(v, info.units, info.quantity)
        ts.append(time.thread_time() - c0)
    return ts
run()
mode = sys.argv[1] if len(sys.argv) > 1 else "time"
if mode == "prof":
    pr = cProfile.Profile(); pr.enable(); run(); pr.disable(); pstats.Stats(pr).sort_stats(sys.argv[2] if len(sys.argv) > 2 else "tottime").print_stats(40)
else:
    meds = [np.median(run()) for _ in range(5)]
    print("compute per chunk ms (median of runs):", round(1000*np.median(meds), 1), [round(1000*m,1) for m in meds])
import shutil  # noqa: E402

shutil.rmtree(a.parent, ignore_errors=True)
