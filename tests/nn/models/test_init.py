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

from ..conftest import TRIPLES


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


def _missing_gradients(model):
    model.train()
    model.loss(*TRIPLES).backward()
    return sorted(name for name, p in model.named_parameters()
                  if p.requires_grad and p.grad is None)


@pytest.mark.parametrize('name,kwargs', [
    ('mllmrec', {}), ('mllmrec', {'user_init': 'random'}),
    ('mllmrec', {'ui_layers': 1}), ('lightgcn', {}), ('bpr', {}), ('vbpr', {}),
    ('freedom', {'reg_weight': 1e-4}),
])
def test_may_skip_parameters_false_means_every_parameter_gets_a_gradient(
        tiny_data, name, kwargs):
    # DistributedDataParallel trusts this declaration (no per-step search).
    model = build_model(name, tiny_data, **kwargs)
    assert model.may_skip_parameters is False
    assert _missing_gradients(model) == []


def test_may_skip_parameters_true_where_the_loss_skips_some(tiny_data):
    model = build_model('freedom', tiny_data, reg_weight=0.0)
    assert model.may_skip_parameters is True
    assert _missing_gradients(model) == ['features.x', 'projections.x.bias',
                                         'projections.x.weight']
    assert build_model('soil', tiny_data).may_skip_parameters is True
