"""The fan-out benchmark (`make bench`, `make bench-quick`); see docs/performance.md."""
