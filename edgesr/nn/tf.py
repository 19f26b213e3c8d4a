"""Import TensorFlow and Keras once, with their start-up logging captured."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from edgesr.quiet import captured_output  # noqa: E402

with captured_output("import tensorflow"):
    import keras  # noqa: E402,F401
    import tensorflow as tf  # noqa: E402,F401
