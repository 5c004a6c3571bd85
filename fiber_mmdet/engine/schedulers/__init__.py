from .fraction_multistep_lr import FractionMultiStepLR

__all__ = ['FractionMultiStepLR']
