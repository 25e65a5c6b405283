"""Notebook 08 (issue 17): bootstrapping 3-D chest CT understanding by distilling an X-ray
expert (Cao et al., CVPR 2024, arXiv 2404.04936; no public code).

:mod:`.reports` (findings data model and report grammar, render and parse), :mod:`.films` (a simulated
radiograph's boxes as findings: the X-ray pool's reports), :mod:`.retrieval`
(TF-IDF report embeddings, language-guided CT -> X-ray retrieval, recall at K), :mod:`.losses`
(InfoNCE image-report alignment with false-negative correction, pair-wise and semantic relation KD),
:mod:`.encoders` (a small 3-D CNN CT encoder and a bag-of-words text encoder).

:mod:`.volumes` makes the simulated CT studies: the five patients' CTs on one 64^3 grid of 5.3125 mm
(``mlcak_lib/data/ct_volumes/``, checked against ``data_manifest.csv``; ``scripts/build_ct_volumes.py``
builds them), ``simulate_study(patient_id, seed)`` inserts 3-D lesions drawn from the radiograph
simulator's own lesion model (:mod:`.lesions3d`: nodule/mass, calcification, lung opacity, pleural
effusion, cardiomegaly, pneumothorax), and ``project_box`` gives each lesion's box on the AP projection,
in the simulator's film convention, so CT and radiograph ground truth agree. The method end to end: :mod:`.data` (CT study splits by patient with their reports and labels, the separate X-ray
pool with the frozen expert's embeddings, both cached), :mod:`.recipe` (the eight ablations ``CTXR_VARIANTS``,
``prepare`` with language-guided retrieval, ``get_ct_model`` through the model cache), :mod:`.evaluate` (zero-shot
AUROC from report prompts, CT -> report R@K, the 10 % linear probe); ``mlcak_lib.ctxr_runner`` runs the grid. The
package is listed in
``cache.NOT_MODEL_CODE``: its models take their own key (:mod:`.keys`), so its code never stales the
committed ViT teacher.
"""
