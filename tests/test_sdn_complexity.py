"""MAC counting (streamd.nets.complexity) against hand-computed figures."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from streamd.nets.complexity import MacCount, count_macs  # noqa: E402
from streamd.nets.sdn import SdnGenerators, sdn_config  # noqa: E402


def _tiny_net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 4, kernel_size=3, padding=1),  # 4*8*8 outputs x 3*3*3 = 6912
        nn.LeakyReLU(0.2),
        nn.Conv2d(4, 4, kernel_size=3, padding=1, groups=4),  # 4*8*8 x 1*3*3 = 2304
        nn.Conv2d(4, 2, kernel_size=3, stride=2, padding=1),  # 2*4*4 x 4*3*3 = 1152
        nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),  # 2*8*8 x 4 = 512
        nn.Upsample(scale_factor=2, mode="nearest"),  # 0
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(128, 5),  # 5 x 128 = 640
    )


def test_hand_computed_tiny_conv_net():
    count = count_macs(_tiny_net(), (torch.zeros(1, 3, 8, 8),))
    assert count == MacCount(conv=6912 + 2304 + 1152, linear=640, upsample=512)
    assert count.total == 11520
    assert count.to_dict()["total"] == 11520


def test_macs_scale_with_the_batch_and_hooks_are_removed():
    net = _tiny_net()
    one = count_macs(net, (torch.zeros(1, 3, 8, 8),))
    two = count_macs(net, (torch.zeros(2, 3, 8, 8),))
    assert two.total == 2 * one.total
    assert all(not layer._forward_hooks for layer in net.modules())


def test_unknown_layers_are_refused():
    with pytest.raises(ValueError, match="ConvTranspose2d"):
        count_macs(nn.ConvTranspose2d(3, 3, 2), (torch.zeros(1, 3, 4, 4),))
    with pytest.raises(ValueError, match="area"):
        count_macs(nn.Upsample(scale_factor=2, mode="area"), (torch.zeros(1, 3, 4, 4),))


def test_sdn_graph_macs_grow_with_the_crop_area():
    torch.manual_seed(0)

    def encoder_macs(resolution: int) -> MacCount:
        generators = SdnGenerators(sdn_config("tiny", resolution=resolution)).eval()
        config = generators.config
        inputs = (torch.zeros(1, 3, resolution, resolution), torch.zeros(1, config.password_bits),
                  torch.zeros(1, config.num_attributes))
        return count_macs(_Anonymize(generators), inputs)

    small, large = encoder_macs(64), encoder_macs(128)
    assert small.conv > 0 and small.linear > 0 and small.upsample > 0
    assert large.conv == 4 * small.conv  # every convolution runs on 4x the pixels
    assert large.linear == small.linear  # the identity MLP does not depend on the crop size


class _Anonymize(nn.Module):
    def __init__(self, generators: SdnGenerators) -> None:
        super().__init__()
        self.generators = generators

    def forward(self, crop, bits, attributes):
        return self.generators.anonymize(crop, bits, attributes)
