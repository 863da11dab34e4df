import io
import sys

import torch

from mllmrec_pyg.transforms import RefineItemGraph
from mllmrec_pyg.transforms._topk import cosine_topk
from mllmrec_pyg.utils.progress import progress_bar

from ..transforms.test_jaccard_cooccurrence import graph


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_hidden_unless_asked_and_on_a_terminal(monkeypatch):
    assert progress_bar(10, 'x', enabled=False).disable
    monkeypatch.setattr(sys, 'stderr', io.StringIO())  # not a terminal
    assert progress_bar(10, 'x', enabled=True).disable
    terminal = _Terminal()
    monkeypatch.setattr(sys, 'stderr', terminal)
    assert progress_bar(10, 'x', enabled=False).disable
    bar = progress_bar(10, 'label', enabled=True)
    assert not bar.disable
    bar.update(10)
    bar.close()
    assert 'label' in terminal.getvalue()


def test_graph_build_bars_show_on_a_terminal_and_change_nothing(monkeypatch):
    x = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
    quiet = cosine_topk(x, 2, False)
    terminal = _Terminal()
    monkeypatch.setattr(sys, 'stderr', terminal)
    shown = cosine_topk(x, 2, False, progress=True)
    assert all(torch.equal(a, b) for a, b in zip(quiet, shown, strict=True))
    assert 'k-NN search' in terminal.getvalue()

    data = graph()
    data['item'].x = x
    out = RefineItemGraph(knn_k=2, jaccard_k=2, progress=True)(data)
    assert 'Jaccard' in terminal.getvalue()
    plain = graph()
    plain['item'].x = x
    want = RefineItemGraph(knn_k=2, jaccard_k=2)(plain)
    got, ref = out['item', 'similar', 'item'], want['item', 'similar', 'item']
    assert torch.equal(got.edge_index, ref.edge_index)
    assert torch.equal(got.edge_weight, ref.edge_weight)
