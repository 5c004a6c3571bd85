from .multi_datasets_average_evaluator import MultiDatasetsAverageEvaluator

__all__ = ['MultiDatasetsAverageEvaluator']
