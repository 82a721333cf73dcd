"""Analysis on top of trained runs and dataset folders.

- `ensemble`: report 3's ensembles (majority vote, highest mean probability, most confident member) of
  genre runs trained on different feature types, evaluated on their shared test split and exported as ONE
  SavedModel (`ensemble_export`); the decision rules live in `rules`.
- `explore`: the exploratory figures of the published reports, for a dataset root (`explore_data`) or a
  trained CNN run (`explore_run`).
"""
