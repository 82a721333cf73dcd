"""Training: compile per task, fit with callbacks, evaluate, report (the one train -> evaluate -> export path)."""
