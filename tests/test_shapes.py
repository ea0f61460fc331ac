"""The shape engine: pure arithmetic, checked against figures Keras itself prints."""

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anyshape.archs import Arch, ArchConfig
from anyshape.shapes import InvalidInputShape, explain, explain_config, minimum_size

# Output sizes of keras.applications.InceptionV3 at 299 x 299 x 3 (its model.summary()).
KERAS_299 = {
    "stem_1a_3x3": (149, 149, 32),
    "stem_2a_3x3": (147, 147, 32),
    "stem_2b_3x3": (147, 147, 64),
    "stem_pool1": (73, 73, 64),
    "stem_3b_1x1": (73, 73, 80),
    "stem_4a_3x3": (71, 71, 192),
    "stem_pool2": (35, 35, 192),
    "mixed0": (35, 35, 256),
    "mixed1": (35, 35, 288),
    "mixed2": (35, 35, 288),
    "mixed3": (17, 17, 768),
    "mixed7": (17, 17, 768),
    "mixed8": (8, 8, 1280),
    "mixed9": (8, 8, 2048),
    "mixed10": (8, 8, 2048),
    "avg_pool": (2048,),
    "predictions": (1000,),
}


def test_stages_at_299_match_keras():
    r = explain((299, 299, 3), include_top=True)
    assert r.valid
    for name, shape in KERAS_299.items():
        assert r.stage(name).shape == shape, name
    # keras.applications.InceptionV3().count_params() and the notop variant
    assert r.params == 23_851_784
    assert explain((299, 299, 3)).params == 21_802_784
    assert r.trainable_params == 23_817_352
    assert r.output_shapes == [(1000,)]


def test_macs_match_design_figures():
    # the README's figures: 5.71 G at 299, 1.07 G at 150, 0.20 G at 75 (avg-pooled features)
    assert round(explain((299, 299, 3), pooling="avg").macs / 1e9, 2) == 5.71
    assert round(explain((150, 150, 3), pooling="avg").macs / 1e9, 2) == 1.07
    assert round(explain((75, 75, 3), pooling="avg").macs / 1e9, 2) == 0.20


def test_smallest_sizes():
    assert explain((75, 75, 3)).valid
    assert explain((75, 75, 3)).stage("mixed10").shape == (1, 1, 2048)
    assert explain((75, 1000, 1)).stage("mixed10").shape == (1, 29, 2048)
    for shape in [(74, 75, 3), (75, 74, 3)]:
        r = explain(shape)
        assert not r.valid
        c = r.collapse[0]
        assert (c.stage, c.layer, c.size_in, c.kernel, c.size_out) == ("mixed8", "mixed8_branch3x3_2_conv", 2, 3, 0)
        assert c.axis == ("height" if shape[0] == 74 else "width")


def test_error_names_stage_sizes_and_nearest_valid_shape():
    r = explain((74, 300, 3))
    with pytest.raises(InvalidInputShape) as e:
        r.raise_if_invalid()
    msg = str(e.value)
    assert "mixed8 collapses" in msg
    assert "3x3 conv, stride 2, valid padding" in msg
    assert "height of 2, smaller than its kernel of 3" in msg
    assert "at least 75" in msg
    assert "Nearest valid shape: (75, 300, 3)" in msg
    assert e.value.report is r
    assert isinstance(e.value, ValueError)


def test_tiny_input_collapses_in_the_stem():
    r = explain((20, 20, 3))
    assert r.collapse[0].stage == "stem_pool2"  # 20 -> 9 -> 7 -> 3 -> 3 -> 1, and a 3x3 pool
    assert r.nearest_valid() == (75, 75)


def test_aux_head_needs_299():
    assert explain((299, 299, 3), include_top=True, aux_logits=True).valid
    r = explain((298, 400, 3), include_top=True, aux_logits=True)
    assert not r.valid
    c = r.collapse[0]
    assert (c.layer, c.size_in, c.kernel) == ("aux_conv1_conv", 4, 5)
    assert "at least 299" in r.reason() and "mixed7" in r.reason()
    assert r.nearest_valid() == (299, 400)
    # the same shape without the aux head is fine
    assert explain((298, 400, 3), include_top=True).valid
    rep = explain((299, 299, 3), include_top=True, aux_logits=True)
    assert rep.stage("aux_conv1").shape == (1, 1, 768)
    assert rep.output_shapes == [(1000,), (1000,)]
    # torchvision's AuxLogits: conv0 (768->128, 1x1) + conv1 (128->768, 5x5) + fc (768->1000)
    aux = sum(rep.stage(n).params for n in ("aux_conv0", "aux_conv1", "aux_predictions"))
    assert aux == (768 * 128 + 3 * 128) + (25 * 128 * 768 + 3 * 768) + (768 * 1000 + 1000)


def test_aux_needs_top():
    r = explain((299, 299, 3), aux_logits=True)
    assert not r.valid and "include_top=True" in r.reason()


def test_channels_first_looking_shape_gets_a_hint():
    r = explain((3, 150, 150))
    assert not r.valid
    assert "looks like channels_first" in r.reason()
    assert "input_shape=(150, 150, 3)" in r.reason()
    r = explain((150, 150, 3), data_format="channels_first")
    assert not r.valid and "looks like channels_last" in r.reason()
    assert explain((3, 150, 150), data_format="channels_first").valid


def test_unknown_sizes_are_valid_and_have_no_macs():
    r = explain((None, None, 5), include_top=True)
    assert r.valid and r.macs is None
    assert r.stage("mixed10").shape == (None, None, 2048)
    r = explain((None, 80, 5))
    assert r.stage("mixed10").shape == (None, 1, 2048)
    assert not explain((None, 74, 5)).valid


def test_channels_only_change_the_first_conv():
    base = explain((100, 100, 3))
    for c in (1, 4, 16):
        r = explain((100, 100, c))
        assert r.valid
        assert r.params - base.params == 3 * 3 * 32 * (c - 3)


def test_bn_scale_adds_one_gamma_per_channel():
    plain = explain((299, 299, 3), include_top=True)
    scaled = explain((299, 299, 3), include_top=True, bn_scale=True)
    # one gamma per BatchNorm channel: half the non-trainable count (moving mean + variance)
    non_trainable = plain.params - plain.trainable_params
    assert non_trainable == 34_432
    assert scaled.params - plain.params == non_trainable // 2
    assert scaled.trainable_params - plain.trainable_params == non_trainable // 2


@pytest.mark.parametrize("pooling,width", [("avg", 2048), ("max", 2048), ("avgmax", 2048), ("catavgmax", 4096)])
def test_pooling_widths(pooling, width):
    r = explain((120, 130, 3), pooling=pooling)
    assert r.output_shapes == [(width,)]
    top = explain((120, 130, 3), pooling=pooling, include_top=True, classes=7)
    assert top.stage("predictions").params == width * 7 + 7


def test_output_shape_channels_first():
    assert explain((3, 299, 299), data_format="channels_first").output_shapes == [(2048, 8, 8)]


@pytest.mark.parametrize(
    "kwargs,needle",
    [
        (dict(input_shape=(1, 299, 299, 3)), "without the batch axis"),
        (dict(input_shape=(299, 299)), "3 entries"),
        (dict(input_shape=(299, 299, None)), "channel count must be known"),
        (dict(input_shape=(299, 299, 0)), "positive integers"),
        (dict(input_shape=(299, 299, 3), pooling="sum"), "pooling must be one of"),
        (dict(input_shape=(299, 299, 3), data_format="NHWC"), "data_format"),
    ],
)
def test_malformed_arguments(kwargs, needle):
    shape = kwargs.pop("input_shape")
    with pytest.raises(ValueError, match=needle):
        explain(shape, **kwargs)


@pytest.mark.parametrize(
    "kwargs,needle",
    [
        (dict(include_top=True, classes=0), "classes must be a positive integer"),
        (dict(dropout_rate=1.0), "dropout_rate"),
    ],
)
def test_invalid_configurations_are_reported(kwargs, needle):
    r = explain((299, 299, 3), **kwargs)
    assert not r.valid and needle in r.reason()


@pytest.mark.parametrize(
    "name, params",
    [
        ("resnet50", 25_636_712),  # zero padding
        ("efficientnet_b0", 5_330_571),  # Rescaling and Normalization in the graph
        ("efficientnet_v2_b0", 7_200_312),
        ("convnext_tiny", 28_589_128),  # LayerNorm and LayerScale
        ("mobilenet_v3_small", 2_554_968),  # hard sigmoid as Rescaling and ReLU6
    ],
)
def test_parameter_counts_are_keras_applications(name, params):
    """keras.applications' model.count_params() at 224 x 224 with the top (Keras 3.15), from the
    tracer alone (tests/test_archs.py compares every network with the built model)."""
    assert explain((224, 224, 3), arch=name, include_top=True).params == params


def test_config_dict_form_refuses_unknown_fields_and_restores_tuples():
    """Survivors of make mutate on archs/base.py: from_dict's unknown-field check and list->tuple."""
    config = ArchConfig(input_shape=(None, 64, 3))
    record = config.to_dict() | {"input_shape": [None, 64, 3]}  # as JSON gives it back
    again = ArchConfig.from_dict(record)
    assert again == config and isinstance(again.input_shape, tuple) and hash(again) == hash(config)
    with pytest.raises(ValueError, match=r"ArchConfig has no field\(s\) \['depth'\]"):
        ArchConfig.from_dict(record | {"depth": 3})
    assert ArchConfig(classes=True).problems() == ["classes must be a positive integer with include_top=True, got True"]
    assert ArchConfig(classes=True, include_top=False).problems() == []


def test_head_stages_say_what_they_compute():
    """The head's rows: avgmax is the mean of both pools, catavgmax both side by side; dropout only
    when asked."""
    with_top = explain((75, 75, 3), include_top=True, pooling="avgmax")
    assert with_top.stage("avgmax_pool").what == "global (average + max) / 2"
    assert explain((75, 75, 3), pooling="catavgmax").stage("catavgmax_pool").what == "global [average, max]"
    assert "dropout" not in [s.name for s in with_top.stages]
    assert "dropout" in [s.name for s in explain((75, 75, 3), include_top=True, dropout_rate=0.5).stages]


def test_a_network_function_that_scales_the_wrong_channel_count_is_reported():
    def network(net, cfg, x):
        return net.conv(net.rescaling(x, scale=[1.0, 2.0], name="bad_scale"), 8, 3)

    arch = Arch(name="probe", keras_name="Probe", family="probe", config_class=ArchConfig, network=network)
    report = explain((32, 32, 3), arch=arch)
    assert not report.valid and "bad_scale scales 2 channels but gets 3" in report.reason()


def test_a_configs_problems_are_reported_before_its_network_runs():
    """A network function may index a table by a Config value; an invalid value is reported in
    the Config's words, not as the KeyError its network would raise."""

    @dataclass(frozen=True)
    class Config(ArchConfig):
        variant: str = "a"

        def problems(self):
            return super().problems() + ([] if self.variant == "a" else [f"variant must be 'a', got {self.variant!r}"])

    def network(net, cfg, x):
        return net.conv(x, {"a": 8}[cfg.variant], 3)

    arch = Arch(name="probe", keras_name="Probe", family="probe", config_class=Config, network=network)
    assert explain((32, 32, 3), arch=arch).valid
    report = explain((32, 32, 3), arch=arch, variant="b")
    assert not report.valid and "variant must be 'a', got 'b'" in report.reason()


@dataclass(frozen=True)
class _DividedConfig(ArchConfig):
    divisor: int = 1

    def problems(self) -> list[str]:
        return super().problems() + ([] if self.divisor else ["divisor must not be 0"])


def test_a_configuration_with_problems_is_reported_not_traced():
    """A network function need not run on a Config its `problems()` refuses (EfficientNet's
    depth_divisor=0 divides by zero): the user gets the problem in the parameter's name."""
    arch = Arch("divided", "Divided", "divided", _DividedConfig, lambda net, cfg, x: net.conv(x, 8 // cfg.divisor, 3))
    report = explain_config(arch, _DividedConfig(input_shape=(32, 32, 3), divisor=0))
    assert not report.valid and report.reason() == "divisor must not be 0"
    with pytest.raises(InvalidInputShape, match="divisor must not be 0"):
        report.raise_if_invalid()
    assert explain_config(arch, _DividedConfig(input_shape=(32, 32, 3), divisor=2)).output_shapes == [(30, 30, 4)]


def test_report_table_lists_every_stage():
    text = str(explain((150, 200, 4), include_top=True, classes=10))
    for name in ["stem_1a_3x3", "stem_pool2", *[f"mixed{i}" for i in range(11)], "avg_pool", "predictions"]:
        assert name in text
    assert "3x4x2048" in text  # mixed10 at 150 x 200
    assert "valid: output (10)" in text
    bad = str(explain((70, 200, 4)))
    assert "INVALID" in bad and "mixed8 collapses" in bad


def test_aligned_sizes_note():
    assert "every input pixel is used" in str(explain((300, 300, 3)))
    assert "every input pixel is used" not in str(explain((299, 299, 3)))
    r = explain((300, 300, 3))
    assert r.aligned_sizes(300) == (299, 331)


@settings(max_examples=300, deadline=None)
@given(h=st.integers(1, 2000), w=st.integers(1, 2000), aux=st.booleans())
def test_validity_is_exactly_the_minimum_size_rule(h, w, aux):
    """Every H, W >= 75 (299 with the aux head) works, and nothing smaller does."""
    r = explain((h, w, 3), include_top=True, aux_logits=aux)
    m = 299 if aux else 75
    assert r.valid == (h >= m and w >= m)
    if not r.valid:
        assert r.nearest_valid() == (max(h, m), max(w, m))


def test_min_input_size_follows_the_stages_a_model_has():
    from anyshape.shapes import min_input_size

    stages = explain((299, 299, 3), include_top=True, aux_logits=True).stages
    layers = [s.layer for s in stages]
    assert min_input_size(layers) == 299  # the aux head's 5x5 conv
    assert min_input_size([n for n in layers if not n.startswith("aux_")]) == 75
    upto = lambda block: layers[: [s.name for s in stages].index(block) + 1]  # noqa: E731
    assert (min_input_size(upto("mixed2")), min_input_size(upto("mixed7"))) == (27, 43)
    assert min_input_size([f"mixed{i}" for i in range(11)] + ["conv2d", "predictions"]) == 75  # keras.applications
    assert min_input_size(["dense", "conv2d"]) == 1  # not InceptionV3: no minimum known
    for n, block in ((27, "mixed2"), (43, "mixed7")):
        assert explain((n, n, 3)).stage(block).height >= 1 and explain((n - 1, n, 3)).stage(block).height == 0


def test_minimum_of_a_network_that_needs_a_fixed_size():
    """VGG's Flatten head (head="flatten") takes no free side, so the search for one side's minimum
    fixes the other (it once left the free side free: no minimum, "Nearest valid shape" = the input)."""
    assert minimum_size("vgg16", include_top=True, head="flatten") == (32, 32)
    small = explain((16, 40, 3), arch="vgg16", include_top=True, head="flatten")
    assert "at least 32" in small.reason() and "Nearest valid shape: (32, 40, 3)" in small.reason()
    assert "at 64 and 96 every input pixel is used" in str(
        explain((65, 97, 3), arch="vgg16", include_top=True, head="flatten")
    )


def test_a_valid_report_says_so_and_an_unknown_side_stays_unknown():
    assert explain((299, 299, 3)).reason() == "valid"
    r = explain((None, 50, 3))
    assert not r.valid and r.nearest_valid() == (None, 75)
    assert r.reason().endswith("Nearest valid shape: (None, 75, 3).")
    first = explain((3, None, 50), data_format="channels_first")
    assert first.reason().endswith("Nearest valid shape: (3, None, 75).")


def test_only_a_small_first_side_gets_the_channels_first_hint():
    """(50, 299, 299) is a too-small height, not 50 channels: no hint."""
    r = explain((50, 299, 299))
    assert not r.valid and "Hint" not in r.reason()
    assert "looks like channels_first" in explain((4, 299, 299)).reason()


def test_report_header_names_the_options_that_differ_from_the_defaults():
    """aux_logits always (InceptionV3's head choice), every other option only when it is not the
    network's default."""
    assert str(explain((299, 299, 3))).splitlines()[0] == (
        "InceptionV3 at input (299, 299, 3) (channels_last), include_top=False, pooling=None, aux_logits=False"
    )
    assert str(explain((299, 299, 3), include_top=True, classes=10, bn_scale=True)).splitlines()[0] == (
        "InceptionV3 at input (299, 299, 3) (channels_last), include_top=True, pooling=None, classes=10, "
        "aux_logits=False, bn_scale=True"
    )
    assert str(explain(arch="resnet50")).splitlines()[0] == (
        "ResNet50 at input (None, None, 3) (channels_last), include_top=False, pooling=None"
    )


def test_the_parameter_limit_is_inclusive():
    """A network with exactly `max_params` parameters builds; one parameter more than the limit is
    refused (shapes.py's `params <= limit`)."""
    report = explain((64, 64, 3), arch="mobilenet", alpha=0.25, include_top=False)
    assert report.size_problem(max_params=report.params) is None
    assert "more than the limit" in report.size_problem(max_params=report.params - 1)


def test_shape_helpers_at_their_edges(monkeypatch):
    """The default parameter limit lets a normal network through; a free channel axis never looks
    transposed; only InceptionV3's Config has an aux head; sizes typed as text are read."""
    from anyshape.shapes import MAX_PARAMS_ENV, parse_dims, transposed_shape_warning

    monkeypatch.delenv(MAX_PARAMS_ENV, raising=False)
    assert explain((224, 224, 3), arch="resnet50", include_top=True).size_problem() is None
    assert transposed_shape_warning((None, 64, 3), "channels_first") is None
    assert transposed_shape_warning((3, 64, None), "channels_last") is None
    assert explain((224, 224, 3), arch="resnet50").aux_logits is False
    assert parse_dims("150x200") == (150, 200)
    assert parse_dims("none, ?, 3", unknown=True) == (None, None, 3)


def test_min_input_size_of_a_fixed_size_model_is_its_networks():
    """The Config's own size is cleared before the search (one minimum for every size): VGG16 built
    with its top at 224 keeps the minimum of its network with the top, 224, not the 32 px its
    fixed-size Flatten head would give if the Config's size were kept."""
    from anyshape.archs import get_arch
    from anyshape.shapes import min_input_size

    config = get_arch("vgg16").config(include_top=True, input_shape=(224, 224, 3))
    layers = ["block1_conv1", "block5_pool", "flatten", "fc1", "fc2", "predictions"]
    assert min_input_size(layers, "vgg16", config=config) == 224
