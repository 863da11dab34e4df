r"""The refined item graph of MLLMRec plugged into FREEDOM: the same model
trained once on its own frozen kNN graph and once on ``RefineItemGraph``'s
graph (thresholded cosine kNN + Jaccard co-occurrence of training
audiences, symmetrically normalised), selected on validation, tested once.
With several modalities (e.g. TikTok's image and audio features) each one is
refined with its own threshold and the graphs are mixed (``fusion='mix'``).
Without ``--alpha``, each modality's threshold is the median of its own
top-10 similarities: encoders differ too much for one fixed value.

    python examples/plug_into_freedom.py [--dataset PATH] [--epochs 30]
"""
import argparse

import torch

from mllmrec_pyg.data import load_dataset
from mllmrec_pyg.nn.models import FREEDOM
from mllmrec_pyg.pipeline import encode_items
from mllmrec_pyg.train import Trainer, seed_everything
from mllmrec_pyg.transforms import RefineItemGraph, similarity_quantiles

parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
parser.add_argument('--dataset', default='synthetic')
parser.add_argument('--epochs', type=int, default=30)
parser.add_argument('--alpha', type=float, default=None)
parser.add_argument('--jaccard-k', type=int, default=10)
parser.add_argument('--seed', type=int, default=2024)
args = parser.parse_args()
torch.set_num_threads(1)

data = load_dataset(args.dataset)
keys = [k for k in ('text_feat', 'image_feat', 'audio_feat', 'x')
        if getattr(data['item'], k, None) is not None]
if not keys:
    data['item'].x = encode_items(data)  # all-MiniLM-L6-v2 of the item text
    keys = ['x']
alpha = [args.alpha if args.alpha is not None else
         similarity_quantiles(data['item'][k], 10, (0.5, ))[0] for k in keys]
# Eq. 6-11 of MLLMRec on the item features and the TRAINING interactions.
data = RefineItemGraph(knn_k=10, alpha=alpha, jaccard_k=args.jaccard_k, key=keys)(data)
print(f'modalities {keys}, alpha {[round(a, 3) for a in alpha]}')

for name, item_graph in (('FREEDOM', 'own'), ('FREEDOM+GR', 'data')):
    seed_everything(args.seed)
    model = FREEDOM.from_data(data, item_graph=item_graph, batch_size=2048)
    result = Trainer(model, data, max_epochs=args.epochs, batch_size=2048,
                     seed=args.seed, progress=False).fit()
    val, test = result.val, result.test
    print(f"{name}: best epoch {result.best_epoch}, Val Recall@20: {val['recall@20']:.4f}, "
          f"Test Recall@20: {test['recall@20']:.4f}, Test NDCG@20: {test['ndcg@20']:.4f}")
