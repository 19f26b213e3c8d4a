"""Network pieces shared by the families: PyTorch layers and Keras building blocks."""
