"""`python -m backends.tfserving <tensorflow_model_server flags>`."""

import os

# Before TensorFlow's first import: keep its C++ INFO/WARNING chatter out of the log.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from backends.tfserving.server.run import main

raise SystemExit(main())
