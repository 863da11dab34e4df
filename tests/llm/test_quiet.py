import sys

import pytest

from mllmrec_pyg.llm._quiet import no_stderr_bars


def test_no_stderr_bars_hides_output_and_shows_it_on_error(capsys):
    with no_stderr_bars():
        print('Converting 10/272', file=sys.stderr)
    assert capsys.readouterr().err == ''
    with pytest.raises(RuntimeError, match='boom'):
        with no_stderr_bars():
            print('context before the error', file=sys.stderr)
            raise RuntimeError('boom')
    assert capsys.readouterr().err == 'context before the error\n'
