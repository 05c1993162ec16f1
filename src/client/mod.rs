//! A small blocking ZEO client used by `zeo pack`, `zeo up` and the benchmarks.
