"""Upstream transports: the keep-alive HTTP/1.1 client and its REST session, pooled gRPC channels."""
