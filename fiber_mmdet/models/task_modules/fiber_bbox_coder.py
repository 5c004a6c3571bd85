"""FIBER's box coder: mmdet's GLIP decoder plus the matching legacy "+1" encoder."""
import torch
from torch import Tensor

from mmdet.models.task_modules.coders import DeltaXYWHBBoxCoderForGLIP
from mmdet.registry import TASK_UTILS
from mmdet.structures.bbox import get_box_tensor


@TASK_UTILS.register_module()
class DeltaXYWHBBoxCoderForFIBER(DeltaXYWHBBoxCoderForGLIP):
    """(dx, dy, dw, dh) deltas with the legacy Detectron "+1" box widths, both ways.

    mmdet's GLIP coder decodes with the +1 convention (``x2`` exclusive anchors) but encodes with the plain
    one; this encoder is the exact inverse of that decoder. Anchors are given like the decoder expects them
    (mmdet's anchors, ``x2 = x1 + size``); target boxes are inclusive-pixel boxes as in the original.
    """

    def encode(self, bboxes, gt_bboxes) -> Tensor:
        anchors = get_box_tensor(bboxes)
        gt = get_box_tensor(gt_bboxes)
        means = anchors.new_tensor(self.means)
        stds = anchors.new_tensor(self.stds)
        aw = anchors[:, 2] - anchors[:, 0]
        ah = anchors[:, 3] - anchors[:, 1]
        ax = (anchors[:, 0] + anchors[:, 2] - 1) * 0.5
        ay = (anchors[:, 1] + anchors[:, 3] - 1) * 0.5
        gw = gt[:, 2] - gt[:, 0] + 1
        gh = gt[:, 3] - gt[:, 1] + 1
        gx = (gt[:, 0] + gt[:, 2]) * 0.5
        gy = (gt[:, 1] + gt[:, 3]) * 0.5
        deltas = torch.stack([(gx - ax) / aw, (gy - ay) / ah, torch.log(gw / aw), torch.log(gh / ah)], dim=-1)
        return (deltas - means) / stds
