import pytest
import torch

from mllmrec_pyg.transforms import (
    CandidateCache,
    JaccardCoOccurrence,
    RefineItemGraph,
    ThresholdKNN,
)
from mllmrec_pyg.transforms.candidates import first_per_row, tensor_digest

from .test_jaccard_cooccurrence import graph


def features() -> torch.Tensor:
    # Hand-built so similarities to item 0 are 1, 0.8, 0.6, 0 (ties elsewhere).
    return torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8], [0.0, 1.0],
                         [0.8, 0.6], [1.0, 0.0]])


def knn_store(data):
    store = data['item', 'knn', 'item']
    return store.edge_index.tolist(), store.edge_weight.tolist()


def test_first_per_row():
    row = torch.tensor([0, 0, 0, 2, 2, 3])
    assert first_per_row(row, 2).tolist() == [True, True, False, True, True, True]
    assert first_per_row(row, 0).tolist() == [False] * 6
    assert first_per_row(torch.empty(0, dtype=torch.long), 3).numel() == 0


def test_tensor_digest_follows_content_dtype_and_shape():
    x = features()
    assert tensor_digest(x) == tensor_digest(x.clone())
    y = x.clone()
    y[3, 1] = 0.999
    assert tensor_digest(y) != tensor_digest(x)
    assert tensor_digest(x.double()) != tensor_digest(x)
    assert tensor_digest(x.view(3, 4)) != tensor_digest(x)


@pytest.mark.parametrize('alpha', [None, 0.0, 0.6, 0.8, 0.95])
def test_knn_sweep_searches_once_and_equals_direct(alpha):
    cache = CandidateCache()
    for a in (0.7, alpha):  # a first transform fills the cache
        data = graph()
        data['item'].x = features()
        out = ThresholdKNN(k=2, alpha=a, candidates=cache)(data)
    direct = graph()
    direct['item'].x = features()
    assert knn_store(out) == knn_store(ThresholdKNN(k=2, alpha=alpha)(direct))
    assert cache.searches['knn'] == 1 and cache.hits['knn'] == 1


def test_knn_other_features_or_settings_search_again():
    cache = CandidateCache()
    for x, k in ((features(), 2), (features() * 2, 2), (features(), 3), (features(), 2)):
        data = graph()
        data['item'].x = x
        ThresholdKNN(k=k, alpha=0.5, candidates=cache)(data)
    # Doubling the features changes their bytes (a content key, even if the
    # cosine is the same); k=3 is another search; the last one is a hit.
    assert cache.searches['knn'] == 3 and cache.hits['knn'] == 1


def test_jaccard_cut_equals_direct_for_every_k_including_ties():
    cache = CandidateCache(jaccard_k=3)
    for k in (1, 2, 3, 2, 1):
        got = JaccardCoOccurrence(k, candidates=cache)(graph())['item', 'cooccurs', 'item']
        want = JaccardCoOccurrence(k)(graph())['item', 'cooccurs', 'item']
        assert got.edge_index.tolist() == want.edge_index.tolist()
        assert got.edge_weight.tolist() == want.edge_weight.tolist()
    # i2 ties i0 and i1 at 1/3: the cut at k=1 keeps the lower index, as a
    # direct top-1 does (checked above); one search for all five requests.
    assert cache.searches['jaccard'] == 1 and cache.hits['jaccard'] == 4


def test_jaccard_larger_request_recomputes():
    cache = CandidateCache()
    JaccardCoOccurrence(1, candidates=cache)(graph())
    JaccardCoOccurrence(2, candidates=cache)(graph())
    JaccardCoOccurrence(1, candidates=cache)(graph())
    assert cache.searches['jaccard'] == 2 and cache.hits['jaccard'] == 1


def test_jaccard_cached_outputs_are_copies():
    cache = CandidateCache(jaccard_k=2)
    first = JaccardCoOccurrence(2, candidates=cache)(graph())['item', 'cooccurs', 'item']
    first.edge_weight.mul_(0)
    again = JaccardCoOccurrence(2, candidates=cache)(graph())['item', 'cooccurs', 'item']
    assert again.edge_weight.sum() > 0


def test_refine_item_graph_grid_with_cache_equals_without():
    cache = CandidateCache(jaccard_k=3)
    for alpha in (0.5, 0.9):
        for k_c in (1, 3):
            data = graph()
            data['item'].x = features()
            got = RefineItemGraph(knn_k=2, alpha=alpha, jaccard_k=k_c,
                                  candidates=cache)(data)
            direct = graph()
            direct['item'].x = features()
            want = RefineItemGraph(knn_k=2, alpha=alpha, jaccard_k=k_c)(direct)
            for rel in ('knn', 'cooccurs', 'similar'):
                a, b = got['item', rel, 'item'], want['item', rel, 'item']
                assert a.edge_index.tolist() == b.edge_index.tolist(), rel
                assert torch.equal(a.edge_weight, b.edge_weight), rel
    assert cache.searches == {'knn': 1, 'jaccard': 1}
    assert cache.hits == {'knn': 3, 'jaccard': 3}
    assert repr(cache) == ('CandidateCache(knn: 1 search(es), 3 hit(s); '
                           'jaccard: 1 search(es), 3 hit(s))')


def test_refine_mix_modalities_share_the_cache():
    cache = CandidateCache()
    for alphas in ([0.5, 0.5], [0.9, 0.2]):
        data = graph()
        data['item'].image_feat = features()
        data['item'].text_feat = features().flip(1)
        RefineItemGraph(knn_k=2, alpha=alphas, key=['image_feat', 'text_feat'],
                        jaccard_k=1, candidates=cache)(data)
    assert cache.searches['knn'] == 2 and cache.hits['knn'] == 2


def test_bad_jaccard_k():
    with pytest.raises(ValueError, match="'jaccard_k' must be a non-negative integer"):
        CandidateCache(jaccard_k=-1)
