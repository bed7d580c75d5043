"""The demo world and the example catalogue: what `hitl dev`, `hitl seed`, the tests and the benchmark
start from (seed data in `demo.world`, the example case files of `examples/` in `demo.examples`)."""
