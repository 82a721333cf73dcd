"""TensorFlow and Keras loaded on first use, for the modules that registries and parsers import.

The registries (tasks, backbone families, feature types) and the command-line parsers built from them must
import without TensorFlow, so that `--help` and flag errors answer in well under a second (importing
TensorFlow takes several seconds). The modules behind those registries use TensorFlow only inside their
functions, through these two stand-ins: the first attribute read imports the real module. Modules that
compute (layers, losses, the data pipeline, training) import TensorFlow as usual.
"""

from __future__ import annotations

import importlib
import types


class _OnFirstUse(types.ModuleType):
    """A module object that imports the module it names when one of its attributes is first read."""

    def __getattr__(self, attr: str):
        module = importlib.import_module(self.__name__)
        return getattr(module, attr)


tf = _OnFirstUse("tensorflow")
keras = _OnFirstUse("keras")
