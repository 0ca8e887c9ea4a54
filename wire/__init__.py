"""Wire formats spoken by both the gateway and the backends (TF Serving JSON, JSON text,
content coding).

Pure functions over bytes and numpy arrays; nothing here imports the gateway or a backend,
so the same module is packed into every TorchServe `.mar` and used by the bundled TF server."""
