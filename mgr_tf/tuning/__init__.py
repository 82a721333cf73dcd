"""keras-tuner studies of the multitask loss weights."""
