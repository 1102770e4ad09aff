"""Upper bounds on what a config, a flag or an input file may ask of the toolkit, in one place.

Each bound sits far above any real use and far below what would exhaust memory or time: a value
past it is a typo or a hostile file (`layers: 1e30`, a 5,000-digit integer), refused with one line
naming it, never the allocation or the hang it would cause. Import-light: the CLI and every schema
read these.
"""

from __future__ import annotations

# Structured text (YAML configs, JSON records): what the bounded reader in yamlfile.py accepts.
MAX_TEXT_BYTES = 16 << 20  # a config or record file; the largest the toolkit writes is ~100 kB
MAX_NESTING = 32  # mapping/list levels; a config has 4, a bench record 5
MAX_NODES = 1_000_000  # values in one document once aliases are expanded (an alias bomb stops here)
MAX_INT = 2**63 - 1  # integers are 64-bit: a bigger one is no count, size or seed the toolkit takes

# Audio and labels.
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 8_000, 192_000  # Hz: what audio interfaces record at
MAX_WINDOW_S = 60.0  # one inference (model summary, export, build, budgets): a dynamic bundle's longest
MAX_CLIP_S = 600.0  # one synthetic clip, rendered in memory (the DCASE clips are at most a few minutes)
MAX_FRAME = 864_000  # 24 h of 100 ms label frames: a bound on what a label file may ask us to allocate
MAX_CLASSES = 1_000  # sound event classes (AudioSet has 527)
MAX_SOURCE_ID = 65_535  # a source (reference) or track (prediction) id within one clip
MAX_ABS_SAMPLE = 100.0  # float audio lies in [-1, 1]; 40 dB above full scale is a scaling bug

# Model sizes (the config schema's bounds; the largest preset, at2seld-cnn14, is well inside).
MAX_CHANNELS = 8_192  # a conv's channels, a transformer's width, a GRU's hidden size
MAX_LAYERS = 64  # transformer or GRU layers, residual blocks per stage
MAX_STAGES = 16  # entries of a per-stage list (channels, pooling)
MAX_FFT = 16_384  # STFT length (0.34 s at 48 kHz; a label hop is 0.1 s)
MAX_MELS = 1_024  # mel bands
MAX_EPOCHS = 100_000  # training epochs, patience, restart cycles

# ONNX: the opsets the model exports to, 14 (the ops it needs) up to the newest torch.onnx's
# TorchScript exporter writes (tests/test_onnx_export.py checks it against the installed torch).
MIN_OPSET, MAX_OPSET = 14, 20
