"""The files of an exported FIBER folder and what its ``fiber_onnx.json`` holds."""
import json
import os.path as osp

GRAPH_FILE = 'fiber.onnx'
METADATA_FILE = 'fiber_onnx.json'
TOKENIZER_FILE = 'tokenizer.json'


class ExportError(ValueError):
    """A model, config, prompt or shape that cannot be exported; the message names the file or setting."""


class DeploymentError(ValueError):
    """An exported folder or an input the runtime cannot run: a missing file, an image larger than a
    fixed-size graph, a text given to a fixed-vocabulary graph. The message says what to do instead."""


def load_metadata(folder: str) -> dict:
    """``fiber_onnx.json`` of an exported folder; every file the runtime needs must be there."""
    if not osp.isdir(folder):
        raise DeploymentError(f'{folder}: no such folder (export one with tools/deployment/export_onnx.py)')
    missing = [name for name in (GRAPH_FILE, METADATA_FILE, TOKENIZER_FILE) if not osp.isfile(osp.join(folder, name))]
    if missing:
        raise DeploymentError(f'{folder}: missing {", ".join(missing)}; copy the whole folder that '
                              'tools/deployment/export_onnx.py wrote')
    with open(osp.join(folder, METADATA_FILE), encoding='utf-8') as f:
        meta = json.load(f)
    if meta.get('format') != 'fiber_onnx':
        raise DeploymentError(f'{osp.join(folder, METADATA_FILE)} is not a FIBER export description')
    return meta
