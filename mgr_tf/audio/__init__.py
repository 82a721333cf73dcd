"""Audio in: in-graph log-mel / chroma features, the synthetic corpus and the audio -> dataset converter."""
