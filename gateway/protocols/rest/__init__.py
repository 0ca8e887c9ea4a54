"""REST ingress: TF Serving's and the Open Inference Protocol's JSON APIs, feedback, the
OpenAPI document."""
