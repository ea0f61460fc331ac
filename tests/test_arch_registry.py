"""anyshape.archs.register_arch: a network defined outside anyshape joins the registry, and the
factory, the shape engine and the CLI know it like any other; anyshape's own stay as they are."""

from __future__ import annotations

import dataclasses

import pytest
import tiny_net

import anyshape
from anyshape import archs


def test_a_registered_network_is_built_explained_and_listed_then_gone():
    assert tiny_net.NAME not in archs.list_models()  # never in anyshape's own registry
    own = archs.list_models()
    with tiny_net.registered() as arch:
        assert tiny_net.NAME in archs.list_models() and archs.list_models(family="tiny_net") == [tiny_net.NAME]
        assert archs.get_arch("TinyTestNet") is archs.get_arch("tinytestnet") is arch  # its aliases too
        report = anyshape.explain((33, 47, 2), arch=tiny_net.NAME, include_top=True, classes=5, width=4)
        assert report.valid and [s.name for s in report.stages][:4] == ["stem", "block1", "block2", "block3"]
        model = anyshape.create_model(tiny_net.NAME, input_shape=(33, 47, 2), classes=5, width=4)
        assert model.output_shape == (None, 5) and model.count_params() == report.params
        assert archs.model_config(model) == (arch, model.anyshape_config) and model.anyshape_config.width == 4
        assert model.get_layer(arch.first_conv).kernel.shape == (3, 3, 2, 4)
        with pytest.raises(TypeError, match="TinyTestNet got unexpected argument"):
            anyshape.create_model(tiny_net.NAME, depth=3)
    assert archs.list_models() == own
    with pytest.raises(archs.UnknownArchitecture, match="no network named 'tiny_test_net'"):
        archs.get_arch(tiny_net.NAME)


def test_registration_never_replaces_a_network(capsys):
    resnet = archs.get_arch("resnet50")
    for clash in (
        dataclasses.replace(tiny_net.ARCH, name="resnet50"),
        dataclasses.replace(tiny_net.ARCH, keras_name="ResNet50"),
    ):
        with pytest.raises(ValueError, match="clashes with the registered network 'resnet50'"):
            archs.register_arch(clash)
    assert archs.get_arch("ResNet50") is resnet
    with pytest.raises(ValueError, match="one of anyshape's own networks"):
        archs.unregister_arch("inception_v3")
    with pytest.raises(ValueError, match="not a registered network"):
        archs.unregister_arch("no_such_net")
    with pytest.raises(ValueError, match="must be a Python identifier"):
        archs.register_arch(dataclasses.replace(tiny_net.ARCH, name="tiny net"))
    with pytest.raises(TypeError, match="takes an anyshape.archs.Arch record"):
        archs.register_arch("tiny_test_net")


def test_the_cli_knows_a_registered_network(capsys):
    from anyshape.cli import main

    with tiny_net.registered():
        assert main(["explain", "--arch", tiny_net.NAME, "--input-shape", "32,32,1", "--option", "width=2"]) == 0
        out = capsys.readouterr().out
        assert "TinyTestNet at input (32, 32, 1)" in out and "3x3 conv 2, stride 2" in out
    with pytest.raises(SystemExit):
        main(["explain", "--arch", tiny_net.NAME])
    assert "argument --arch: no network named 'tiny_test_net'" in capsys.readouterr().err
