"""matplotlib's pyplot on the file-only Agg backend, for every module that draws a figure.

Reports, exploration figures and tuning plots are PNG files written on machines without a display; the
backend is chosen once, here, before pyplot is imported.
"""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)

__all__ = ["plt"]
