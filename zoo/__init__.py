"""neural-ode-zoo: continuous-depth models as PyTorch Lightning modules, with pretrained weights.

``zoo.load``, ``zoo.transforms``, ``zoo.list_models`` and ``zoo.info`` import the hub (and
Lightning) on first use, so that ``import zoo.ode`` stays plain PyTorch.
"""

__version__ = "0.1.0"

__all__ = ["__version__", "info", "list_models", "load", "transforms"]


def __getattr__(name: str):
    if name in ("info", "list_models", "load", "transforms"):
        from zoo import hub

        return getattr(hub, name)
    raise AttributeError(f"module 'zoo' has no attribute {name!r}")
