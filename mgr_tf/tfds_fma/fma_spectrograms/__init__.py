"""fma_spectrograms dataset."""
