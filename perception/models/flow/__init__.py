"""Optical-flow models; importing registers them in ``perception.registry.MODELS``.

Each model module has its own ``convert_official_state_dict`` (import it from the module)."""
from .raft import RAFT, flow_sequence_loss
from .sea_raft import SEARAFT, mixture_of_laplace_loss

__all__ = ['RAFT', 'SEARAFT', 'flow_sequence_loss', 'mixture_of_laplace_loss']
