import math

import pytest
import torch
from torch_geometric.data import HeteroData

from mllmrec_pyg.transforms import FuseFeatures, modality_weights_default


def _cosine(x: torch.Tensor) -> torch.Tensor:
    z = x / x.norm(dim=1, keepdim=True)
    return z @ z.t()


def _data() -> HeteroData:
    data = HeteroData()
    data['item'].image_feat = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [-1.0, 0.0]])
    data['item'].audio_feat = torch.tensor([[2.0, 0.0, 0.0], [0.0, 3.0, 0.0],
                                            [1.0, 0.0, 0.0], [0.0, 0.5, 0.0]])
    return data


def test_fused_cosine_is_the_weighted_mean_of_the_modalities():
    data = FuseFeatures(['image_feat', 'audio_feat'], [1.0, 3.0])(_data())
    z = data['item'].x_fused
    assert z.shape == (4, 5)
    torch.testing.assert_close(z.norm(dim=1), torch.ones(4))
    expected = 0.25 * _cosine(data['item'].image_feat) + 0.75 * _cosine(data['item'].audio_feat)
    torch.testing.assert_close(z @ z.t(), expected)
    # Hand values: items 0 and 1 share the image cosine 1/sqrt(2) only.
    assert float(z[0] @ z[1]) == pytest.approx(0.25 / math.sqrt(2))
    assert float(z[1] @ z[3]) == pytest.approx(0.25 * -1 / math.sqrt(2) + 0.75)


def test_default_weights_are_freedoms_mix():
    assert modality_weights_default(['image_feat', 'audio_feat']) == [0.1, 0.9]
    assert modality_weights_default(['text_feat', 'image_feat', 'audio_feat']) == [0.45, 0.1, 0.45]
    assert modality_weights_default(['x', 'audio_feat']) == [0.5, 0.5]
    assert modality_weights_default(['x']) == [1.0]
    assert FuseFeatures(['image_feat', 'audio_feat']).modality_weights == [0.1, 0.9]


def test_zero_rows_stay_zero_and_bad_input_is_named():
    data = _data()
    data['item'].audio_feat[2] = 0.0
    z = FuseFeatures(['image_feat', 'audio_feat'], [1.0, 1.0])(data)['item'].x_fused
    assert torch.equal(z[2, 2:], torch.zeros(3))
    with pytest.raises(ValueError, match=r"data\['item'\].text_feat is missing"):
        FuseFeatures(['image_feat', 'text_feat'])(_data())
    with pytest.raises(ValueError, match="one weight per key"):
        FuseFeatures(['image_feat', 'audio_feat'], [1.0])
    with pytest.raises(ValueError, match="not all zero"):
        FuseFeatures(['image_feat', 'audio_feat'], [0.0, 0.0])
    with pytest.raises(ValueError, match="non-empty list"):
        FuseFeatures('image_feat')
