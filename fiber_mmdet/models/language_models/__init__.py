from .fused_roberta import FusedRoberta, FusedRobertaLayer

__all__ = ['FusedRoberta', 'FusedRobertaLayer']
