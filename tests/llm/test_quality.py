import pytest

from mllmrec_pyg.llm.quality import (
    BOILERPLATE_OPENINGS,
    RunawayCut,
    cut_runaway,
    distinct_n,
    is_list,
    items_named,
    max_ngram_repeats,
    quality_report,
    starts_with_boilerplate,
    words,
)

LOOP = 'I like bamboo bamboo bamboo bamboo bamboo'
PROSE = 'This user enjoys quiet dramas. They like slow films.'
LISTED = ('The user preferences are:\n1. Toy Story 1995\n2. Heat 1995\n'
          '3. Casino 1995\n4. Babe 1995\n5. Fargo 1996\n6. Emma 1996\n'
          '7. Scream 1996')


def test_words():
    assert words("Sci-Fi, children's! **Toy** Story_2 (1995)") == [
        'sci-fi', "children's", 'toy', 'story', '2', '1995']
    assert words('1. -- ...') == ['1']
    assert words('') == []


def test_max_ngram_repeats():
    # (bamboo, bamboo, bamboo) starts at words 3, 4 and 5: three times.
    assert max_ngram_repeats(LOOP) == 3
    assert max_ngram_repeats(LOOP, n=1) == 5
    assert max_ngram_repeats(PROSE) == 1
    assert max_ngram_repeats('too short') == 0
    assert max_ngram_repeats('a b c a b c a b c') == 3


def test_distinct_n():
    # 6 bigrams: (i, like), (like, bamboo) and 4 x (bamboo, bamboo).
    assert distinct_n(LOOP) == 3 / 6
    assert distinct_n(PROSE) == 1.0
    assert distinct_n('a b a b') == 2 / 3
    assert distinct_n('one') is None
    assert distinct_n('a b c', n=3) == 1.0


def test_starts_with_boilerplate():
    assert starts_with_boilerplate('Sure! The user likes dramas.')
    assert starts_with_boilerplate('  "Certainly, here it is')
    assert starts_with_boilerplate("**Here's** the profile:")
    assert starts_with_boilerplate('Here’s the profile')
    assert starts_with_boilerplate('As an AI, I cannot')
    assert starts_with_boilerplate('OK')
    assert starts_with_boilerplate("I'm thrilled to assist you in creating")
    assert not starts_with_boilerplate('Surely the user likes dramas.')
    assert not starts_with_boilerplate('Okapis are what this user likes.')
    assert not starts_with_boilerplate(PROSE)
    assert not starts_with_boilerplate('The user is sure of it.')
    assert starts_with_boilerplate('Great question', openings=('great', ))
    assert all(o == o.lower() for o in BOILERPLATE_OPENINGS)


def test_is_list():
    assert is_list(LISTED)
    assert is_list('- a\n* b\n• c')
    assert not is_list('- a\n- b')
    assert not is_list('1995 was a year. 2. Not a list line either')
    assert is_list('1) a\n2) b', min_lines=2)


def test_items_named():
    items = ['Toy Story 1995 Animation Comedy', 'Heat 1995 Action',
             'Crumb 1994 Documentary']
    # "toy story 1995" and "heat 1995 action" are there; "crumb 1994
    # documentary" is not (only "Crumb 1994").
    assert items_named('Loves Toy Story (1995) and Heat, 1995 action. '
                       'Crumb 1994.', items) == 2
    assert items_named('Loves comedies.', items) == 0
    assert items_named('Likes Fargo a lot', ['Fargo']) == 1
    assert items_named('anything', ['']) == 0
    assert items_named('toy story', items, n=2) == 1


def test_cut_runaway_loop():
    # (bamboo x3) starts at words 3, 4 and 5; the text is cut where its
    # second occurrence starts, word 4 (no full sentence before it).
    assert cut_runaway(LOOP) == RunawayCut('I like bamboo', 'loop')
    # With a full sentence before the loop, the cut goes back to it.
    text = ('The user likes dramas. They enjoy Heat, Heat, Heat, Heat, Heat '
            'and more.')
    assert cut_runaway(text) == RunawayCut('The user likes dramas.', 'loop')
    looped = 'A b c. A b c. A b c. A b c.'
    assert cut_runaway(looped) == RunawayCut('A b c.', 'loop')
    # What is kept has no 3-gram three times.
    for case in (LOOP, text, looped):
        assert max_ngram_repeats(cut_runaway(case).text) < 3
    assert cut_runaway(PROSE) == RunawayCut(PROSE, None)
    assert cut_runaway('  untouched  ') == RunawayCut('  untouched  ', None)


def test_cut_runaway_list_and_cap():
    assert cut_runaway(LISTED) == RunawayCut(
        'The user preferences are:\n1. Toy Story 1995\n2. Heat 1995\n'
        '3. Casino 1995\n4. Babe 1995\n5. Fargo 1996', 'list')
    assert cut_runaway(LISTED, max_list_items=6).text.endswith('6. Emma 1996')
    assert cut_runaway(LISTED, max_list_items=7).reason is None
    # The token cap interrupted the second sentence: it is dropped.
    capped = 'This user enjoys quiet dramas. They also like the slow'
    assert cut_runaway(capped, finish_reason='length') == RunawayCut(
        'This user enjoys quiet dramas.', 'cap')
    assert cut_runaway(capped, finish_reason='stop') == RunawayCut(capped)
    # Nothing to go back to, or nothing interrupted: kept.
    assert cut_runaway('no sentence ends', finish_reason='length') == \
        RunawayCut('no sentence ends')
    assert cut_runaway(PROSE + ' ', finish_reason='length') == \
        RunawayCut(PROSE + ' ')


def test_quality_report():
    texts = [LOOP, PROSE, LISTED, 'Sure! I like it', 'one']
    items = [[], ['Quiet Dramas of 1990'], ['Toy Story 1995', 'Heat 1995',
                                            'Casino 1995'], [], []]
    report = quality_report(texts, ['length', 'stop', 'length', None, 'stop'],
                            items)
    # LISTED: 26 words, 25 distinct bigrams; 'one' has no bigram.
    distinct = [3 / 6, 1.0, 1.0, 1.0]
    assert report == {
        'outputs': 5,
        'repeated_3gram_share': 1 / 5,
        'mean_distinct_2': sum(distinct) / 4,
        'token_cap_share': 2 / 4,
        'finish_reason_known': 4,
        'boilerplate_share': 1 / 5,
        'list_share': 1 / 5,
        'mean_words': (7 + 9 + 26 + 4 + 1) / 5,
        'mean_items_named': 3 / 5,
        'items_named_3plus_share': 1 / 5,
    }
    assert distinct_n(LISTED) == 1.0 and len(words(LISTED)) == 26
    empty = quality_report([])
    assert empty == {
        'outputs': 0, 'repeated_3gram_share': None, 'mean_distinct_2': None,
        'token_cap_share': None, 'finish_reason_known': 0,
        'boilerplate_share': None, 'list_share': None, 'mean_words': None}
    assert quality_report(['a b'])['token_cap_share'] is None
    with pytest.raises(ValueError, match='Got 1 finish reasons for 2 texts'):
        quality_report(['a', 'b'], ['stop'])
    with pytest.raises(ValueError, match='Got 1 item lists for 2 texts'):
        quality_report(['a', 'b'], item_texts=[[]])
