"""The model families: one file each, a plain ``nn.Module`` inside a thin LightningModule."""

from zoo.models.anode import ANODE, VectorODEClassifier
from zoo.models.classifier import Classifier
from zoo.models.ffjord import FFJORD
from zoo.models.latent_ode import LatentODE
from zoo.models.odenet import ODENet, ResNet
from zoo.models.series_rnn import RNNVAE, GRUDeltaT, ODERNNForecaster

__all__ = [
    "ANODE",
    "FFJORD",
    "RNNVAE",
    "Classifier",
    "GRUDeltaT",
    "LatentODE",
    "ODENet",
    "ODERNNForecaster",
    "ResNet",
    "VectorODEClassifier",
]
