"""neural-ode-zoo: continuous-depth models as PyTorch Lightning modules, with pretrained weights."""

__version__ = "0.1.0"

from zoo.hub import info, list_models, load

__all__ = ["__version__", "info", "list_models", "load"]
