import pathlib

import pytest


def write(path: pathlib.Path, text: str) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def tiny_mmrec(tmp_path) -> pathlib.Path:
    r"""Three users, four items; item 3 appears only in test."""
    root = tmp_path / 'tiny'
    write(root / 'tiny.inter', 'userID\titemID\tx_label\n'
          '0\t0\t0\n0\t1\t0\n0\t2\t1\n0\t3\t2\n'
          '1\t1\t0\n1\t2\t0\n1\t0\t1\n1\t1\t2\n'  # (1, 1) duplicated
          '2\t2\t0\n2\t0\t2\n')
    write(root / 'tiny.items.tsv', 'itemID\ttitle\tbrand\tasin\timage\n'
          '0\tRed mug\tAcme\tA0\timg/0.png\n1\tBlue {x} lamp\t\tA1\t\n'
          '2\tChair\tSeatCo\tA2\thttp://example.org/2.jpg\n')
    write(root / 'u_map.csv', 'user_id,userID\nR0,0\nR1,1\nR2,2\n')
    return root
