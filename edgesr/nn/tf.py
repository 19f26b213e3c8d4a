"""Import TensorFlow and Keras once, with their start-up logging captured (the 'tflite' extra)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from edgesr.extras import require_installed  # noqa: E402
from edgesr.quiet import captured_output  # noqa: E402

for _module in ("tensorflow", "keras"):  # a missing extra: one line naming it, not a failed import
    require_installed(_module, "tflite")
with captured_output("import tensorflow"):
    import keras  # noqa: E402,F401
    import tensorflow as tf  # noqa: E402,F401
