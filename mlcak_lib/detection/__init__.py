"""Omni-supervised lesion detection after OXnet (Luo et al., MICCAI 2021, arXiv 2104.03218; notebook 07).

What exists (the library groundwork of issue 16):

* :mod:`.model` -- a CPU-sized torchvision RetinaNet (tiny backbone, 3-level FPN, focal loss, smooth-L1)
  with OXnet's global head (1x1 convolution on the last backbone stage: class activation maps);
* :mod:`.losses` -- dual attention alignment, global prototype alignment, the soft focal loss;
* :mod:`.ema` -- the mean teacher (EMA of the student, decay 0.99);
* :mod:`.sampling` -- supervision regimes (exact, nested fractions of images with boxes / image labels /
  none) and the two-stream batch sampler;
* :mod:`.data` -- detector targets and mixed batches from any :class:`~mlcak_lib.splits.InMemorySplit`;
* :mod:`.objective` -- every OXnet term on one mixed batch;
* :mod:`.evaluate` -- COCO AP (pycocotools), FROC (MONAI), image-level AUROC, by lesion size;
* :mod:`.keys` -- the code fingerprint of detectors (this package is outside ``cache.MODEL_CODE``);
* :mod:`.pretrain` -- the backbone pretrained on image labels of films the experiment never trains on (the
  part ImageNet plays in the paper);
* :mod:`.recipe` -- the ablations as named weight settings, the training settings per profile, the loop and
  :func:`~.recipe.get_detector` (load or train under :func:`.keys.detection_fingerprint`).

The grid (ablations x box fractions x resolutions x seeds, evaluated on the test split) is run by
:mod:`mlcak_lib.detection_runner` (``mlcak-detect``), which lives outside this package so that editing it changes
no detector's key. Notebook 07 reads the committed grid.
"""
