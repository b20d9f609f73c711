"""Applications built on the library: the demo (synthetic data -> the four steps -> report) and its motion part."""
