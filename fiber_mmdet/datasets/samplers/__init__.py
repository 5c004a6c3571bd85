from .curriculum_sampler import CurriculumSampler

__all__ = ['CurriculumSampler']
