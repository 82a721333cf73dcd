"""Features: audio -> log-mel, chroma, MFCC in TensorFlow ops (librosa parity), beat synchronisation, a clip's
stored arrays, and the feature-type registry (what a model's input is, derived from the stored arrays).

`types` imports no TensorFlow (the registry is read by the command-line parsers); `spectral` and `clips`
compute.
"""
