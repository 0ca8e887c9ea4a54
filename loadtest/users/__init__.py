"""What runs inside every Locust process: the HTTP and gRPC users, exact latencies, open-loop
arrivals, the stop rule."""
