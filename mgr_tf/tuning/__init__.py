"""keras-tuner studies of the multitask loss weights (`python -m mgr_tf.tune tuning/<study>.json`).

Modules: `study` (the study file: dataclasses and validation), `space` (settings, hyperparameters and the
configs they give), `hypermodel` (the keras-tuner HyperModel and tuners), `results` (rows, table, plot,
best.json), `cli` (`main` and `export_best`).
"""
