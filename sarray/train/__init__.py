"""sarray.train: training pairs from the archive and the DeepSpeed training loop.

- :mod:`~sarray.train.degrade`: the documented degradation model (fine -> satellite-like).
- :mod:`~sarray.train.pairs`: random tile pairs from the archive, split by scene.
- :mod:`~sarray.train.config`: :class:`~sarray.train.config.TrainConfig` (YAML).
- :mod:`~sarray.train.loop`: :func:`~sarray.train.loop.run_training` (ZeRO 1/2/3, EMA, exact
  resume, validation, export); :mod:`~sarray.train.launch`: Ray Train launcher.
- :mod:`~sarray.train.plan`: memory per GPU of each ZeRO stage (DeepSpeed's estimators).
- :mod:`~sarray.train.sources`: the real high-resolution training data, ingested.

Light to import: torch, deepspeed and ray are imported inside the functions that need them.
"""
