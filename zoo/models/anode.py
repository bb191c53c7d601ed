"""Augmented Neural ODEs, and ODE classifiers of low-dimensional toy data.

Dupont, Doucet, Teh 2019, "Augmented Neural ODEs", NeurIPS. A neural ODE's flow is a
homeomorphism, so it cannot separate classes whose regions are nested (concentric spheres, the
function g(x) of Section 4); appending zero dimensions to the state (augmentation) removes that
limit and lowers the number of function evaluations. The image model has no conv stem: the ODE
acts on the image itself, augmented with zero channels, and a linear layer reads the whole
augmented end state. With ``augment_dim=0`` it is the paper's NODE baseline.

The toy classifier is the paper's d-dimensional model (MLP dynamics, linear head), and with the
``antisymmetric`` or ``hamiltonian`` dynamics the stable networks of Haber & Ruthotto 2017,
"Stable architectures for deep neural networks", Inverse Problems.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from typing import ClassVar

from torch import nn

from zoo.families import register_model
from zoo.models.classifier import Classifier
from zoo.ode import DynamicsSpec, ODEBlock, SolverSettings

ANODE_SOLVER = {"method": "dopri5", "rtol": 1e-3, "atol": 1e-3, "adjoint": True}


def augmented_ode_then_linear(
    input_shape: Sequence[int],
    num_classes: int,
    augment_dim: int,
    dynamics: DynamicsSpec,
    solver: SolverSettings,
    integration_time: float,
) -> nn.Sequential:
    """``net.body``, the ODE block on the augmented input, then ``net.head``, a linear layer on it.

    The state has ``input_shape[0] + augment_dim`` channels (or features) and the input's other
    dimensions; the head flattens the whole end state, augmented part included.
    """
    channels = input_shape[0] + augment_dim
    block = ODEBlock(dynamics.build(channels), solver, t0=0.0, t1=integration_time,
                     augment_dim=augment_dim)
    head = nn.Sequential(nn.Flatten(), nn.Linear(channels * math.prod(input_shape[1:]), num_classes))
    return nn.Sequential(OrderedDict(body=block, head=head))


@register_model
class ANODE(Classifier):
    """ANODE (or, with ``augment_dim=0``, NODE) image classifier: ODE on the image, linear head.

    Args:
        input_shape: (channels, height, width) of the images (linked from the DataModule).
        num_classes: Number of classes (linked from the DataModule).
        augment_dim: Zero channels appended to the image before the ODE.
        dynamics: The ODE function on ``channels + augment_dim`` channels; default the paper's
            ``anode_conv`` (Conv1x1-ReLU-Conv3x3-ReLU-Conv1x1, time as a channel) with 64 filters.
        solver: What it leaves unset: dopri5 at rtol = atol = 1e-3 with the adjoint, as in the paper.
        integration_time: End time of the ODE, which starts at 0.
        weights: Pretrained weights to start from: a zoo name, a safetensors path or a URL.
    """

    head = "net.head.1"
    default_dynamics: ClassVar[dict] = {"name": "anode_conv", "hidden_dims": [64]}

    def __init__(
        self,
        input_shape: Sequence[int] = (1, 28, 28),
        num_classes: int = 10,
        augment_dim: int = 5,
        dynamics: DynamicsSpec | None = None,
        solver: SolverSettings | None = None,
        integration_time: float = 1.0,
        weights: str | None = None,
    ) -> None:
        super().__init__(num_classes)
        dynamics = DynamicsSpec.coerce(dynamics or self.default_dynamics)
        solver = SolverSettings.coerce(solver, defaults=ANODE_SOLVER)
        self.save_arguments({"input_shape": input_shape, "num_classes": num_classes,
                             "augment_dim": augment_dim, "dynamics": dynamics, "solver": solver,
                             "integration_time": integration_time})
        self.net = augmented_ode_then_linear(input_shape, num_classes, augment_dim, dynamics, solver,
                                             integration_time)
        self.load_weights(weights)


@register_model
class VectorODEClassifier(ANODE):
    """ODE classifier of feature vectors: (augmented) ODE on the features, linear head.

    Args:
        input_shape: ``(d,)``, the number of features (linked from the DataModule).
        num_classes: Number of classes (linked from the DataModule).
        augment_dim: Zero features appended before the ODE (ANODE); 0 for a plain NODE.
        dynamics: The ODE function on ``d + augment_dim`` features; default ``concat_mlp`` with
            hidden widths [32, 32] as in Dupont et al.'s toys. ``antisymmetric`` and
            ``hamiltonian`` give Haber & Ruthotto's stable networks.
        solver: What it leaves unset: dopri5 at rtol = atol = 1e-3 with the adjoint; ``leapfrog``
            with a ``step_size`` for ``hamiltonian``.
        integration_time: End time of the ODE, which starts at 0.
        weights: Pretrained weights to start from: a zoo name, a safetensors path or a URL.
    """

    default_dynamics: ClassVar[dict] = {"name": "concat_mlp", "hidden_dims": [32, 32]}

    def __init__(
        self,
        input_shape: Sequence[int] = (2,),
        num_classes: int = 2,
        augment_dim: int = 0,
        dynamics: DynamicsSpec | None = None,
        solver: SolverSettings | None = None,
        integration_time: float = 1.0,
        weights: str | None = None,
    ) -> None:
        super().__init__(input_shape, num_classes, augment_dim, dynamics, solver, integration_time, weights)
