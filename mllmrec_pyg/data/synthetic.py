r"""The embedded default dataset: a seeded, generated multimodal catalogue.

Items have latent attributes (category, colour, material, style, price
band); their metadata text is written from those attributes and a PNG image is
rendered from them, so a vision model has real pixels to read.  Users have
latent tastes over the same attributes, and those tastes generate the
interactions, which are then split with MMRec's rule.  The tastes are kept
(``user_taste.npy`` and the ``taste_*`` columns of ``synthetic.users.tsv``) as
ground truth that later stages can be checked against.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from typing import Dict, List, Tuple

import numpy as np

from .hashing import hash_params, mllmrec_home
from .split import mmrec_split

CATEGORIES: Tuple[Tuple[str, str], ...] = (
    ('table lamp', 'Home > Lighting'),
    ('armchair', 'Home > Furniture'),
    ('coffee mug', 'Kitchen > Drinkware'),
    ('rain jacket', 'Clothing > Outerwear'),
    ('sneaker', 'Shoes > Athletic'),
    ('backpack', 'Bags > Backpacks'),
    ('scarf', 'Clothing > Accessories'),
    ('flower vase', 'Home > Decor'),
)
COLOURS: Tuple[Tuple[str, Tuple[int, int, int]], ...] = (
    ('red', (200, 30, 40)), ('navy', (25, 40, 110)), ('forest green', (30, 110, 50)),
    ('mustard', (215, 170, 40)), ('black', (20, 20, 20)), ('white', (245, 245, 240)),
    ('pink', (235, 130, 170)), ('grey', (128, 128, 128)),
)
MATERIALS = ('leather', 'cotton', 'ceramic', 'oak wood', 'recycled plastic', 'wool')
STYLES = ('minimalist', 'vintage', 'sporty', 'rustic', 'modern')
PRICE_BANDS = ('budget', 'mid-range', 'premium', 'luxury')
BRANDS = {
    'minimalist': ('Lumen & Line', 'Nordform'), 'vintage': ('Old Mill', 'Heritage Co.'),
    'sporty': ('Stride', 'PeakRun'), 'rustic': ('Barnwood', 'Hearthstone'),
    'modern': ('Axis Studio', 'Neon Works'),
}
#: The attribute vocabularies in the order of the taste vector's blocks.
ATTRIBUTES: Dict[str, Tuple[str, ...]] = {
    'category': tuple(c for c, _ in CATEGORIES),
    'colour': tuple(c for c, _ in COLOURS),
    'material': MATERIALS,
    'style': STYLES,
    'price_band': PRICE_BANDS,
}


@dataclass(frozen=True)
class SyntheticCatalog:
    r"""Parameters of the generated catalogue.

    Args:
        num_users (int, optional): Number of users. (default: :obj:`500`)
        num_items (int, optional): Number of items. (default: :obj:`300`)
        mean_interactions (float, optional): Mean interactions per user
            (at least 5 each). (default: :obj:`12.0`)
        taste_sharpness (float, optional): How strongly tastes drive choices
            (0 = uniformly random users). (default: :obj:`6.0`)
        image_size (int, optional): Side of the rendered PNGs, in pixels.
            (default: :obj:`64`)
        seed (int, optional): Seed of everything generated. (default: :obj:`0`)
    """
    num_users: int = 500
    num_items: int = 300
    mean_interactions: float = 12.0
    taste_sharpness: float = 6.0
    image_size: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        if self.num_users < 1 or self.num_items < 10:
            raise ValueError('SyntheticCatalog needs num_users >= 1 and '
                             f'num_items >= 10 (got {self.num_users}, '
                             f'{self.num_items})')
        if self.mean_interactions < 5:
            raise ValueError('mean_interactions must be >= 5')

    def generate(self, folder: str) -> None:
        r"""Writes the catalogue as an MMRec-format dataset folder."""
        rng = np.random.default_rng(self.seed)
        os.makedirs(os.path.join(folder, 'images'), exist_ok=True)
        sizes = [len(v) for v in ATTRIBUTES.values()]
        item_attr = np.stack([rng.integers(0, s, self.num_items) for s in sizes], 1)
        items = self._write_items(folder, item_attr, rng)

        # Tastes: a peaked Dirichlet per attribute block.
        taste = np.concatenate([rng.dirichlet(np.full(s, 0.3), self.num_users)
                                for s in sizes], axis=1)
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        onehot = np.zeros((self.num_items, sum(sizes)))
        for j, off in enumerate(offsets):
            onehot[np.arange(self.num_items), off + item_attr[:, j]] = 1.0
        popularity = rng.lognormal(0.0, 0.5, self.num_items)

        users, item_ids, times = [], [], []
        counts = np.minimum(5 + rng.poisson(self.mean_interactions - 5,
                                            self.num_users), self.num_items // 2)
        for u in range(self.num_users):
            affinity = onehot @ taste[u] / len(sizes)
            logits = self.taste_sharpness * len(sizes) * affinity + np.log(popularity)
            p = np.exp(logits - logits.max())
            chosen = rng.choice(self.num_items, size=counts[u], replace=False,
                                p=p / p.sum())
            users.append(np.full(counts[u], u))
            item_ids.append(chosen)
            times.append(np.sort(rng.integers(1_600_000_000, 1_700_000_000, counts[u])))
        user = np.concatenate(users)
        item = np.concatenate(item_ids)
        time = np.concatenate(times)
        label = mmrec_split(user, seed=self.seed)
        with open(os.path.join(folder, 'synthetic.inter'), 'w') as f:
            f.write('userID\titemID\tx_label\ttimestamp\n')
            for row in zip(user, item, label, time, strict=True):
                f.write('\t'.join(str(int(v)) for v in row) + '\n')

        with open(os.path.join(folder, 'synthetic.users.tsv'), 'w') as f:
            names = list(ATTRIBUTES)
            f.write('userID\t' + '\t'.join(f'taste_{n}' for n in names) + '\n')
            for u in range(self.num_users):
                cells = []
                for j, n in enumerate(names):
                    block = taste[u, offsets[j]:offsets[j] + sizes[j]]
                    cells.append(ATTRIBUTES[n][int(block.argmax())])
                f.write(f'{u}\t' + '\t'.join(cells) + '\n')
        np.save(os.path.join(folder, 'user_taste.npy'), taste.astype(np.float32))
        with open(os.path.join(folder, 'dataset.json'), 'w') as f:
            json.dump({'name': 'synthetic', 'domain': 'Home and Fashion',
                       'generator': asdict(self),
                       'attributes': {k: list(v) for k, v in ATTRIBUTES.items()},
                       'items': len(items)}, f, indent=1)

    def _write_items(self, folder: str, attr: np.ndarray,
                     rng: np.random.Generator) -> List[str]:
        from PIL import Image, ImageDraw

        titles = []
        with open(os.path.join(folder, 'synthetic.items.tsv'), 'w') as f:
            f.write('itemID\ttitle\tbrand\tcategories\tdescription\timage\t'
                    'category\tcolour\tmaterial\tstyle\tprice_band\n')
            for i, (c, co, m, s, p) in enumerate(attr):
                cat, path = CATEGORIES[c]
                colour, rgb = COLOURS[co]
                style, material, price = STYLES[s], MATERIALS[m], PRICE_BANDS[p]
                brand = BRANDS[style][int(rng.integers(0, 2))]
                title = f'{brand} {style.title()} {colour.title()} {material.title()} {cat.title()}'
                desc = (f'A {price} {style} {cat} made of {material} in {colour}. '
                        f'Designed for people who like a {style} look.')
                image = f'images/{i}.png'
                self._render(Image, ImageDraw, os.path.join(folder, image), c, rgb, m, s)
                f.write(f'{i}\t{title}\t{brand}\t{path}\t{desc}\t{image}\t'
                        f'{cat}\t{colour}\t{material}\t{style}\t{price}\n')
                titles.append(title)
        return titles

    def _render(self, Image, ImageDraw, path: str, category: int,
                rgb: Tuple[int, int, int], material: int, style: int) -> None:
        n = self.image_size
        background = (255, 255, 255) if sum(rgb) < 600 else (70, 70, 90)
        img = Image.new('RGB', (n, n), background)
        draw = ImageDraw.Draw(img)
        a, b = n // 8, n - n // 8
        shape = category % 4
        if shape == 0:
            draw.ellipse([a, a, b, b], fill=rgb)
        elif shape == 1:
            draw.rectangle([a, a, b, b], fill=rgb)
        elif shape == 2:
            draw.polygon([(n // 2, a), (a, b), (b, b)], fill=rgb)
        else:
            draw.rectangle([a, n // 3, b, b], fill=rgb)
            draw.ellipse([n // 3, a, 2 * n // 3, n // 2], fill=rgb)
        # Material as texture, style as frame: both visible in the pixels.
        tone = tuple(min(255, v + 60) for v in rgb)
        step = 4 + material * 2
        for k in range(a, b, step):
            if material % 2 == 0:
                draw.line([(k, a), (k, b)], fill=tone, width=1)
            else:
                draw.point([(k, k)], fill=tone)
        draw.rectangle([0, 0, n - 1, n - 1], outline=(60 * style % 255, 90, 160), width=1 + style)
        img.save(path, format='PNG')


def _parse_spec(spec: str) -> SyntheticCatalog:
    keys = {'users': 'num_users', 'items': 'num_items', 'seed': 'seed',
            'interactions': 'mean_interactions', 'sharpness': 'taste_sharpness',
            'image_size': 'image_size'}
    kwargs: Dict[str, float] = {}
    if ':' in spec:
        for part in spec.split(':', 1)[1].split(','):
            if not part.strip():
                continue
            name, _, value = part.partition('=')
            if name.strip() not in keys:
                raise ValueError(f"Unknown synthetic option '{name}' (expected "
                                 f"{sorted(keys)}), e.g. 'synthetic:users=500,items=300'")
            field = keys[name.strip()]
            kwargs[field] = float(value) if field in (
                'mean_interactions', 'taste_sharpness') else int(value)
    return SyntheticCatalog(**kwargs)  # type: ignore[arg-type]


def synthetic_folder(spec: str = 'synthetic') -> str:
    r"""Generates (once) and returns the folder of the catalogue described by
    :obj:`spec` (``'synthetic'`` or ``'synthetic:users=N,items=M,seed=S'``),
    under :obj:`$MLLMREC_HOME/synthetic/<hash of the parameters>`."""
    catalog = _parse_spec(spec)
    key = hash_params({'catalog': asdict(catalog), 'version': 1})[:16]
    folder = os.path.join(mllmrec_home(), 'synthetic', f'synthetic-{key}')
    if not os.path.exists(os.path.join(folder, 'dataset.json')):
        os.makedirs(os.path.dirname(folder), exist_ok=True)
        tmp = tempfile.mkdtemp(dir=os.path.dirname(folder))
        catalog.generate(tmp)
        if os.path.exists(folder):  # a half-written folder from a crash
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    return folder
