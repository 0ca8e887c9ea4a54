"""What the gateway tells about itself: Prometheus metrics, outcome observers, latency histograms,
Server-Timing.
"""
