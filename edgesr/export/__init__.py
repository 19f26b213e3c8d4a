"""Exporters: ONNX (torch.onnx + onnxsim) and TFLite (Keras rebuild + TFLiteConverter)."""
