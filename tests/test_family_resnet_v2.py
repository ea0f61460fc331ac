"""ResNet50V2/101V2/152V2 (anyshape.archs.resnet_v2) against keras.applications.

Runs on whichever backend KERAS_BACKEND names; checked on TensorFlow, JAX and PyTorch.
- every member has keras.applications' weight layout and layer names (ResNet50V2, the smallest,
  with and without the top, and its outputs from Keras' weights at 224 x 224 and at 65 x 97 with
  and without the top, are checked by the family harness, tests/test_family.py);
- the feature points sit at strides 2, 4, 8, 16 and 32 (Keras' v2 reduces in a stage's last block).
"""

import pytest

from anyshape.archs import get_arch, list_models
from anyshape.shapes import explain

ODD = (65, 97, 3)  # odd and non-square, above keras.applications' minimum of 32


@pytest.mark.parametrize("name", list_models("resnet_v2"))
def test_feature_points_one_per_reduction(name):
    report = explain((224, 224, 3), arch=name)
    layers = {stage.layer: stage for stage in report.stages}
    sizes = [layers[point].height for point in get_arch(name).feature_points]
    assert sizes == [112, 56, 28, 14, 7]
