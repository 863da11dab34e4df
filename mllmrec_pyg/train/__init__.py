from .early_stopping import EarlyStopping
from .grid_search import GridSearchResult, grid_search
from .metric_logger import MetricLogger
from .negative_sampler import UniformNegativeSampler
from .reproducibility import seed_everything
from .trainer import Trainer, TrainResult

__all__ = [
    'EarlyStopping',
    'GridSearchResult',
    'MetricLogger',
    'TrainResult',
    'Trainer',
    'UniformNegativeSampler',
    'grid_search',
    'seed_everything',
]
