"""Deployment stage (imported as `at2seld_edge.deploy`): TensorRT engine building, deployment
bundles and the Python/C++ runtimes. TensorRT is imported lazily inside the functions that use it."""
