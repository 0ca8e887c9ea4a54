"""TorchServe backend: the handler packed into every .mar, config, launcher, gRPC stubs."""
