"""Export of FIBER models for deployment (ONNX); the torch-free runtime is :mod:`fiber_mmdet.runtime`."""
from .onnx_export import export_model, export_onnx, preprocessing_settings
from .onnx_graph import FIBERFixedVocabularyGraph, FIBERGraph

__all__ = ['export_model', 'export_onnx', 'preprocessing_settings', 'FIBERGraph', 'FIBERFixedVocabularyGraph']
