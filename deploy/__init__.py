"""Production deployment: compose, Kubernetes, images, and the renderer of their configs."""
