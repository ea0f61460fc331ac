"""Fine-tuning any registered network (InceptionV3 by default) at any input shape, with BatchNorm
handled right.

    import anyshape
    result = anyshape.train("digits", input_shape=(75, 75, 1), epochs=3, output="runs/digits")
    result.test_accuracy, result.run_dir          # runs/digits/{model.keras, report.json, classes.json}
    anyshape.train("digits", arch="mobilenet", arch_options={"alpha": 0.25}, freeze="up-to-conv_pw_5_relu")

The network is built by `anyshape.create_model(arch, ...)`; its record (`anyshape.archs.Arch`)
gives the freeze points (its `blocks`), its classifier, its default size and, from scratch, its
preprocessing. The run folder, its checkpoint and model.keras record the network and its Config.

The loop is Keras' own `fit`, one epoch at a time, with what plain `fit` gets wrong around it:

* BatchNorm statistics. Keras' BatchNormalization keeps moving averages with momentum 0.99;
  with a few dozen steps an epoch they never catch up with weights that change fast (from
  scratch on scikit-learn's digits: 0.95 train accuracy, 0.10 test accuracy after 4 epochs).
  `recalibrate_batchnorm` re-estimates them as the plain average of per-batch statistics over
  training images at the training resolution (momentum k/(k+1) at step k), after every epoch
  on a few batches (so validation means something) and over the whole training set at the end.
* Frozen layers. `freeze=` sets `trainable = False` on whole layers; on a BatchNormalization
  layer that also makes Keras 3 run it in inference mode (keras/src/layers/normalization/
  batch_normalization.py: statistics are updated only under `training and self.trainable`),
  so a frozen backbone keeps its pretrained statistics. Recalibration leaves frozen layers alone.
* Checkpoints. After every epoch the weights (BatchNorm statistics included) and the optimizer
  state are written atomically (temporary file + os.replace) and `checkpoint.json` is replaced
  last, so a run killed at any moment resumes from its last complete epoch (`resume=True`).

The run folder holds `model.keras` (single softmax output; an aux head used in training is
dropped; its class names and preprocessing inside, see `anyshape.model_info`), `classes.json`
(the same for people and older readers, read back by `read_run_info`) and `report.json`
(configuration, per-epoch figures, test accuracy, images/s, wall time).

One job per module: `config` (TrainConfig and the rules of its options, stages, freeze options),
`batchnorm` (recalibration), `freezing` (freeze_layers), `run_folder` (the folder's files and
checkpoints), `network` (building, compiling and saving the network), `data` (the dataset and
the tf.data pipelines) and `trainer` (`Trainer`, whose parts are the classes of the last three,
and the stage and epoch loop; `train`).
"""

from anyshape.model_info import RUN_INFO_FILE, read_run_info  # classes.json: re-exported for old callers
from anyshape.training.batchnorm import _batchnorm_layers, recalibrate_batchnorm
from anyshape.training.config import (
    FREEZE_HELP,
    TrainConfig,
    TrainingInterrupted,
    TrainResult,
    check_freeze,
    freeze_options,
    parse_stages,
)
from anyshape.training.freezing import freeze_layers
from anyshape.training.run_folder import BEST_WEIGHTS_FILE, _load_weights_only, _save_weights_only
from anyshape.training.trainer import Trainer, train

__all__ = [
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "train",
    "recalibrate_batchnorm",
    "freeze_layers",
    "parse_stages",
    "check_freeze",
    "freeze_options",
    "read_run_info",
    "RUN_INFO_FILE",
    "TrainingInterrupted",
    "FREEZE_HELP",
    "BEST_WEIGHTS_FILE",
    "_batchnorm_layers",
    "_load_weights_only",
    "_save_weights_only",
]
