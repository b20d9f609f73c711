"""Planning and running recipes: content-addressed stages (runner), run folders (session), sweeps over variants
and seeds (sweep), the depth-noise study (robustness), and the files they write (files)."""
