"""`python -m backends.tfserving <tensorflow_model_server flags>`."""

# ruff: noqa: E402  (TensorFlow is first imported through import_tensorflow, below)

from trainers.tf_quiet import import_tensorflow

# Before anything else imports TensorFlow: its start-up noise stays out of the log.
import_tensorflow()

from backends.tfserving.server.run import main

raise SystemExit(main())
