"""Per backend kind and transport only its encoding and decoding (TF Serving, TorchServe; REST, gRPC)."""
