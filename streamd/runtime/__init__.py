"""Model runners behind one interface (onnxruntime, TensorRT, torch) and the models manifest.

Only `torch_runner` imports torch and only `tensorrt_runner` imports TensorRT; both are imported
explicitly by whoever needs them, so the daemon's onnxruntime path needs neither.
"""
