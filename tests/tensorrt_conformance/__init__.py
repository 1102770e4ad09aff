"""The TensorRT conformance harness: the real Python bindings of each TensorRT release of the
matrix (matrix.py), imported on this CPU over stub libraries (bindings.py), their surface
recorded (surface_dump.py -> surfaces/<version>.json), and a stand-in module made from that
surface (standin.py) that the toolkit's TensorRT code runs against, each call checked against the
release's pybind11 signatures."""
