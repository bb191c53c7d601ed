"""neural-ode-zoo: continuous-depth models as PyTorch Lightning modules, with pretrained weights."""

__version__ = "0.1.0"
