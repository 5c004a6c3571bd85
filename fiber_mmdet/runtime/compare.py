"""Pairing two runs' detections of one image (e.g. ONNX Runtime against PyTorch), numpy-free and torch-free."""
from typing import List, NamedTuple


class Comparison(NamedTuple):
    """Result of :func:`compare_detections`.

    Attributes:
        unmatched (list[int]): indices of ``expected`` detections without a counterpart.
        extra (int): ``actual`` detections left over.
        max_box_diff (float): largest coordinate difference (px) over the matched pairs.
        max_score_diff (float): largest score difference over the matched pairs.
    """
    unmatched: List[int]
    extra: int
    max_box_diff: float
    max_score_diff: float

    @property
    def equal(self) -> bool:
        return not self.unmatched and self.extra == 0


def compare_detections(expected: dict, actual: dict, box_tol: float = 0.5, score_tol: float = 1e-3) -> Comparison:
    """Pair each detection of ``expected`` (``bboxes``, ``scores``, ``labels``, ``label_names`` lists) with one of
    ``actual`` of the same label and name, box within ``box_tol`` px and score within ``score_tol`` (near-equal
    scores may come out in another order, so detections are paired, not compared by position)."""
    free = list(range(len(actual['scores'])))
    unmatched, box_diff, score_diff = [], 0.0, 0.0
    for k, (box, score, label, name) in enumerate(zip(expected['bboxes'], expected['scores'], expected['labels'],
                                                      expected['label_names'])):
        for j in free:
            d_box = max(abs(a - b) for a, b in zip(actual['bboxes'][j], box))
            d_score = abs(actual['scores'][j] - score)
            if (actual['labels'][j] == label and actual['label_names'][j] == name and d_score <= score_tol
                    and d_box <= box_tol):
                free.remove(j)
                box_diff, score_diff = max(box_diff, d_box), max(score_diff, d_score)
                break
        else:
            unmatched.append(k)
    return Comparison(unmatched, len(free), box_diff, score_diff)
