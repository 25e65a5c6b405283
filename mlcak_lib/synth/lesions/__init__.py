"""Lesion models of the simulator (notebook 01): each adds attenuation (mm x delta-mu) to the line-integral image.

:mod:`.canvas` holds the per-image working state and the shared helpers (sizes from VinDr-CXR's
box tables, boxes and masks from what is drawn); :mod:`.lung`, :mod:`.pleura` and :mod:`.heart`
the models by theme. :data:`MODELS` maps each finding's class name to its model.
"""

from __future__ import annotations

from .canvas import (
          AERATED_MM,
          DMU_LUNG,
          DMU_SOFT,
          MIN_BOX_PX,
          MU_WATER,
          Canvas,
          _instance,
          sample_size,
)
from .heart import aortic_enlargement, cardiomegaly, heart_size
from .lung import calcification, lung_opacity, nodule, pulmonary_fibrosis
from .pleura import pleural_effusion, pleural_thickening, pneumothorax

#: The lesion model of each finding, by class name.
MODELS = {"Nodule/Mass": nodule, "Calcification": calcification, "Lung Opacity": lung_opacity,
          "Pleural effusion": pleural_effusion, "Cardiomegaly": cardiomegaly, "Pneumothorax": pneumothorax,
          "Aortic enlargement": aortic_enlargement, "Pleural thickening": pleural_thickening,
          "Pulmonary fibrosis": pulmonary_fibrosis}

__all__ = ["AERATED_MM", "DMU_LUNG", "DMU_SOFT", "MIN_BOX_PX", "MODELS", "MU_WATER", "Canvas", "_instance", "heart_size", "sample_size"]
