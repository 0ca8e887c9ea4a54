"""The bundled TF Serving-compatible server: its core, model manager, REST and gRPC APIs, metrics.

Importing this package imports TensorFlow only where a module needs it."""
