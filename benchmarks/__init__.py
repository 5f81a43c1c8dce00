"""camheal benchmarks: ``python -m benchmarks.run`` measures and writes docs/BENCHMARKS.md."""
