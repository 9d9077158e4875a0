"""Optical-flow models; importing registers them in ``perception.registry.MODELS``."""
from .raft import RAFT, convert_official_state_dict, flow_sequence_loss

__all__ = ['RAFT', 'convert_official_state_dict', 'flow_sequence_loss']
