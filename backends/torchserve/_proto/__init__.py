"""Generated TorchServe 0.12 gRPC stubs (scripts/gen_protos.sh); do not edit by hand."""
