"""Inference on your own images: :class:`FIBERInferencer` (MMDetection's ``DetInferencer`` for FIBER)."""
from .inferencer import FIBERInferencer, ImageLoadError, best_detection, dataset_class_names

__all__ = ['FIBERInferencer', 'ImageLoadError', 'best_detection', 'dataset_class_names']
