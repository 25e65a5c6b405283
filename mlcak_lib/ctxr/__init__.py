"""Notebook 08 (issue 17, in progress): bootstrapping 3-D chest CT understanding by distilling an X-ray
expert (Cao et al., CVPR 2024, arXiv 2404.04936; no public code).

:mod:`.reports` (findings data model and report grammar, render and parse), :mod:`.films` (a simulated
radiograph's boxes as findings: the X-ray pool's reports), :mod:`.retrieval`
(TF-IDF report embeddings, language-guided CT -> X-ray retrieval, recall at K), :mod:`.losses`
(InfoNCE image-report alignment with false-negative correction, pair-wise and semantic relation KD),
:mod:`.encoders` (a small 3-D CNN CT encoder and a bag-of-words text encoder). The package is listed in
``cache.NOT_MODEL_CODE``: its models take their own key (:mod:`.keys`), so its code never stales the
committed ViT teacher.
"""
