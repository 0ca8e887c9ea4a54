"""Ingress protocols: wire format <-> InferRequest/InferResponse, nothing about frameworks."""
