"""gRPC ingress: TF Serving's and the Open Inference Protocol's services on one grpc.aio server."""
