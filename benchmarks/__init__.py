"""Developer micro-benchmarks: what each part of the gateway costs, measured side by side.

Nothing in the product imports this package. See `benchmarks/README.md`."""
