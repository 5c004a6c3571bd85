from .grounding_visualizer import GroundingLocalVisualizer, gt_label_names

__all__ = ['GroundingLocalVisualizer', 'gt_label_names']
