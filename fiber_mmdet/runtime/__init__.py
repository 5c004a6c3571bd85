"""Run exported FIBER models with onnxruntime, tokenizers, numpy and Pillow only: no torch, no mmcv
(``pip install fiber_mmdet[deploy]``). Export with ``tools/deployment/export_onnx.py``."""
from .metadata import DeploymentError, ExportError, load_metadata
from .onnx_fiber import ONNXFIBER

__all__ = ['ONNXFIBER', 'DeploymentError', 'ExportError', 'load_metadata']
