"""mgr_tf: music genre recognition and music-emotion regression from spectrograms.

Keras 3 / TensorFlow reimplementation of published work on the FMA-derived
"multitask affective music" spectrogram data, packaged as a SavedModel pipeline.
"""

__version__ = "0.1.0"
