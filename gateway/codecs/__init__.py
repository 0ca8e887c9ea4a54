"""Tensor codecs shared by the gateway's ingress protocols and upstream clients."""
