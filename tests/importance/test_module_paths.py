"""Torch module paths of convs nested several scopes deep resolve, with both exporters.

A ResNet downsample (``layer2.0.downsample.0``: a conv inside a Sequential inside a block inside
a Sequential) and a three-level nested module (``features.denseblock1.denselayer1.conv1``).
Every conv has its own width, so the node a key resolves to is identified by its channels.
"""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from onnxrecede.importance.file_format import (  # noqa: E402
    Importances,
    channel_count,
    resolve_importances,
    torchscript_module_path,
)
from onnxrecede.io.model_files import load_model  # noqa: E402


class Block(nn.Module):
    def __init__(self, cin: int, mid: int, cout: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, mid, 3, padding=1)
        self.conv2 = nn.Conv2d(mid, cout, 3, stride=2, padding=1)
        self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=2), nn.BatchNorm2d(cout))

    def forward(self, x):
        return torch.relu(self.conv2(torch.relu(self.conv1(x))) + self.downsample(x))


class DenseLayer(nn.Module):
    def __init__(self, cin: int, width: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, width, 1)

    def forward(self, x):
        return torch.cat([x, torch.relu(self.conv1(x))], 1)


class DenseBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.denselayer1 = DenseLayer(8, 5)

    def forward(self, x):
        return self.denselayer1(x)


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential()
        self.features.add_module("conv0", nn.Conv2d(3, 8, 3, padding=1))
        self.features.add_module("denseblock1", DenseBlock())
        self.layer2 = nn.Sequential(Block(13, 6, 11))
        self.head = nn.Conv2d(11, 4, 1)

    def forward(self, x):
        return self.head(self.layer2(self.features(x)))


#: key -> output channels of the conv it must name
EXPECTED = {
    "layer2.0.downsample.0": 11,
    "features.denseblock1.denselayer1.conv1": 5,
    "layer2.0.conv1": 6,
    "features.conv0": 8,
}


def test_scope_levels_rebuild_the_path():
    assert torchscript_module_path(
        ["layer2", "layer2.0", "downsample", "downsample.0"]
    ) == "layer2.0.downsample.0"
    assert torchscript_module_path(
        ["features", "denseblock1", "denselayer1", "conv1"]
    ) == "features.denseblock1.denselayer1.conv1"
    assert torchscript_module_path(["blocks", "blocks.0", "blocks.0.1", "conv"]) == "blocks.0.1.conv"
    assert torchscript_module_path(["conv1"]) == "conv1"


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, Path]:
    from tests.models.export import export_model

    torch.manual_seed(0)
    net = Net().eval()
    root = tmp_path_factory.mktemp("scopes")
    return {
        exporter: export_model(net, (1, 3, 8, 8), root / f"net.{exporter}.onnx", exporter)
        for exporter in ("dynamo", "torchscript")
    }


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_nested_module_paths_resolve(exported, exporter):
    model = load_model(exported[exporter])
    imp = Importances({key: [1.0] * n for key, n in EXPECTED.items()})
    resolved = resolve_importances(model, imp)
    for key, n in EXPECTED.items():
        node = resolved[key].node
        assert node.op_type == "Conv", key
        assert channel_count(node) == n, (key, node.name)
    assert len({id(r.node) for r in resolved.values()}) == len(EXPECTED)
