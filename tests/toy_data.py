"""A tiny synthetic dataset for the model / training tests: noise images with bright and dark squares.

Class 0: bright square, class 1: dark square, class 2: bright band at the bottom. MCCT = any finding.
Boxes carry their size in "mm" (side length in pixels at 224, i.e. 1 px = 1 mm here).
"""

import torch

from mlcak_lib.resize import area_resize
from mlcak_lib.splits import InMemorySplit

CLASS_NAMES = ["bright", "dark", "band"]


def toy_split(n: int = 64, resolutions=(224, 28), seed: int = 0, name: str = "toy") -> InMemorySplit:
    g = torch.Generator().manual_seed(seed)
    hr = 224
    images = 0.5 + 0.05 * torch.randn(n, 1, hr, hr, generator=g)
    mlct = (torch.rand(n, 3, generator=g) < 0.35).float()
    boxes, labels, mm = [], [], []
    for i in range(n):
        b, lab, size_mm = [], [], []
        for c in (0, 1):
            if mlct[i, c]:
                s = int(torch.randint(8, 40, (1,), generator=g))
                x0, y0 = (int(v) for v in torch.randint(0, hr - s, (2,), generator=g))
                images[i, 0, y0:y0 + s, x0:x0 + s] += 0.3 if c == 0 else -0.3
                b.append([x0, y0, x0 + s, y0 + s]); lab.append(c); size_mm.append(float(s))
        if mlct[i, 2]:
            images[i, 0, 190:210, :] += 0.3
            b.append([0, 190, hr, 210]); lab.append(2); size_mm.append(float("nan"))
        boxes.append(torch.tensor(b, dtype=torch.float32).reshape(-1, 4))
        labels.append(torch.tensor(lab, dtype=torch.long))
        mm.append(torch.tensor(size_mm, dtype=torch.float32))
    images = images.clamp(0, 1)
    views = {r: (images if r == hr else area_resize(images, r)).float().contiguous() for r in resolutions}
    return InMemorySplit(views, mlct, (mlct.sum(1) > 0).long(), list(CLASS_NAMES), boxes, labels, mm, name)
