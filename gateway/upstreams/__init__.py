"""Backend clients: one per backend kind and transport, all behind the `Upstream` protocol."""
