import pytest

from mllmrec_pyg.nn.models import (
    BPRMF,
    MODELS,
    VBPR,
    LightGCN,
    MLLMRec,
    Recommender,
    build_model,
)


def test_build_model_names(tiny_data):
    assert list(MODELS) == ['mllmrec', 'lightgcn', 'bpr', 'vbpr', 'freedom', 'soil']
    expected = {'mllmrec': MLLMRec, 'lightgcn': LightGCN, 'bpr': BPRMF,
                'vbpr': VBPR}
    for name, cls in expected.items():
        model = build_model(name, tiny_data)
        assert type(model) is cls
        assert isinstance(model, Recommender)
    model = build_model('LightGCN', tiny_data, num_layers=1, reg_weight=0.1)
    assert (model.num_layers, model.reg_weight) == (1, 0.1)


def test_build_model_errors(tiny_data):
    with pytest.raises(ValueError, match="Unknown model 'lattice'"):
        build_model('lattice', tiny_data)
    with pytest.raises(ValueError, match="Unknown option.*n_layers.*'lightgcn'"):
        build_model('lightgcn', tiny_data, n_layers=2)
