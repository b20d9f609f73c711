"""The bottom layer: facts and helpers every other layer may use, importing nothing of modistill above it.

- `errors`: `ModistillError`, the one base of every error the library raises for bad input or settings.
- `config`: typed dataclass configs from YAML with dotted overrides.
- `atomic`: the one atomic file writer (text, JSON, NumPy arrays, raw bytes).
- `schema`: `VersionedFile`, the base of every typed, versioned JSON file the code writes.
- `paper`: the paper's tables (rows, titles, numbers, noise levels): one source for recipes and reports.
"""
