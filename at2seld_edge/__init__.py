"""at2seld-edge: put an AT2SELD sound event localization and detection model on a Jetson, and prove it fits."""

__version__ = "0.1.0"
