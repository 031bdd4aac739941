"""SDN networks, losses and a few training iterations (CPU, small widths)."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))  # export/ is a script folder, not part of the installed package

from export import train_sdn  # noqa: E402
from streamd.nets.sdn import (  # noqa: E402
    SdnConfig,
    SdnGenerators,
    build_sdn,
    build_sdn_from_config,
    load_generators,
    random_password_bits,
    save_generators,
    sdn_config,
)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Small convolutions run fastest on one thread, and spin-waiting threads crawl on a busy machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _condition(config: SdnConfig, batch: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    image = torch.rand(batch, 3, config.resolution, config.resolution, generator=generator) * 2 - 1
    bits = random_password_bits(batch, config.password_bits, generator)
    attributes = torch.randint(0, 2, (batch, config.num_attributes), generator=generator).float()
    return image, bits, attributes


@pytest.mark.parametrize("size", ["tiny", "small", pytest.param("paper", marks=pytest.mark.slow)])
def test_every_network_has_the_documented_shapes(size):
    network = build_sdn(size, num_identities=7).eval()
    config = network.config
    image, bits, attributes = _condition(config, 2)
    s, latent = config.resolution, config.latent_size
    with torch.no_grad():
        features = network.feature_extractor(image)
        assert features.shape == (2, config.latent_channels, latent, latent)
        assert network.feature_classifier(features).shape == (2, 7)
        code = network.encoder.identity_network(bits, attributes)
        assert code.shape == features.shape
        surrogate = network.generators.anonymize(image, bits, attributes)
        restored = network.generators.restore(surrogate, bits, attributes)
        patch, identity_logits, attribute_logits = network.discriminator(image)
    assert surrogate.shape == restored.shape == image.shape
    assert float(surrogate.abs().max()) <= 1.0 and float(restored.abs().max()) <= 1.0
    assert patch.shape == (2, 1, s // 8, s // 8)
    assert identity_logits.shape == (2, 7)
    assert attribute_logits.shape == (2, config.num_attributes)


def test_password_shorter_than_32_bits_is_refused():
    with pytest.raises(ValueError, match="password_bits"):
        sdn_config("tiny", password_bits=31)
    with pytest.raises(ValueError, match="unknown SDN size"):
        sdn_config("huge")
    config = sdn_config("tiny", password_bits=48, attribute_names=("Male", "Smiling"))
    assert config.password_bits == 48 and config.num_attributes == 2
    assert SdnConfig.from_dict(config.to_dict()) == config


def test_wrong_condition_shapes_are_refused():
    network = build_sdn("tiny", width=8)
    image, bits, attributes = _condition(network.config, 1)
    with pytest.raises(ValueError, match="password_bits"):
        network.generators.anonymize(image, bits[:, :16], attributes)
    with pytest.raises(ValueError, match="attributes"):
        network.generators.restore(image, bits, attributes[:, :3])


def test_identity_code_depends_on_password_and_attributes():
    network = build_sdn("tiny", width=8).eval()
    _, bits, attributes = _condition(network.config, 1)
    identity = network.encoder.identity_network
    with torch.no_grad():
        base = identity(bits, attributes)
        flipped = bits.clone()
        flipped[0, 0] = 1 - flipped[0, 0]
        assert not torch.allclose(base, identity(flipped, attributes))
        assert not torch.allclose(base, identity(bits, 1 - attributes))


def test_generator_weights_round_trip_strictly(tmp_path):
    generators = SdnGenerators(sdn_config("tiny", width=8))
    path = tmp_path / "generators.pt"
    save_generators(generators, path)
    loaded = load_generators(path)
    for (name, a), (_, b) in zip(generators.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    payload = torch.load(path, map_location="cpu", weights_only=True)
    payload["state_dict"].pop(next(iter(payload["state_dict"])))
    torch.save(payload, path)
    with pytest.raises(RuntimeError, match="Missing key"):
        load_generators(path)
    with pytest.raises(FileNotFoundError):
        load_generators(tmp_path / "absent.pt")


def test_losses_on_hand_made_inputs():
    logits = torch.tensor([[10.0, 0.0, 0.0], [0.0, 10.0, 0.0]])
    assert float(train_sdn.identity_removal(logits, torch.tensor([1, 0]))) < 0.01  # p(true) tiny
    assert float(train_sdn.identity_removal(logits, torch.tensor([0, 1]))) > 5.0  # p(true) ~ 1
    assert float(train_sdn.identity_removal(logits, torch.tensor([-1, -1]))) == 0.0
    assert float(train_sdn.identity_ce(logits, torch.tensor([0, 1]))) < 1e-3
    a = torch.zeros(2, 3, 4, 4)
    assert float(train_sdn.hinge_min_distance(a, a + 0.5, 0.2)) == 0.0
    assert float(train_sdn.hinge_min_distance(a, a + 0.05, 0.2)) == pytest.approx(0.15)
    attribute_logits = torch.tensor([[20.0, -20.0]])
    targets = torch.tensor([[1.0, 1.0]])
    assert float(train_sdn.masked_bce(attribute_logits, targets, torch.tensor([[1.0, 0.0]]))) < 1e-6
    assert float(train_sdn.masked_bce(attribute_logits, targets, torch.tensor([[0.0, 1.0]]))) > 10.0


def test_wrong_passwords_and_attributes_always_differ():
    generator = torch.Generator().manual_seed(0)
    bits = random_password_bits(16, 32, generator)
    wrong = train_sdn.wrong_passwords(bits, generator)
    differing = (wrong != bits).sum(dim=1)
    assert bool((differing >= 1).all())
    assert bool((differing[1::2] <= 4).all())  # odd rows: 1-4 flipped bits
    attributes = torch.randint(0, 2, (16, 8), generator=generator).float()
    assert bool(((train_sdn.wrong_attributes(attributes, generator) != attributes).sum(1) >= 1).all())


def test_codec_channel_keeps_gradients_and_quantizes():
    image = (torch.rand(2, 3, 32, 32) * 2 - 1).requires_grad_(True)
    settings = train_sdn.ChannelSettings(jpeg_probability=1.0, resize_probability=1.0)
    out = train_sdn.codec_channel(image, settings, random.Random(0))
    out.sum().backward()
    assert image.grad is not None and float(image.grad.abs().sum()) > 0
    levels = (out.detach() + 1) * 127.5
    assert torch.allclose(levels, levels.round(), atol=1e-3)


def test_a_few_training_iterations_reduce_the_loss():
    torch.manual_seed(0)
    config = sdn_config("tiny", width=8, num_residual_blocks=1, identity_hidden=32, num_identities=4)
    trainer = train_sdn.SdnTrainer(
        build_sdn_from_config(config), torch.device("cpu"), train_sdn.LossWeights(),
        train_sdn.ChannelSettings(jpeg_probability=0.0, resize_probability=0.0), generator_every=1,
        learning_rate=1e-3, use_amp=False, seed=0,
    )
    generator = torch.Generator().manual_seed(1)

    def batch():
        return {
            "image": torch.rand(4, 3, 64, 64, generator=generator) * 2 - 1,
            "identity": torch.arange(4),
            "attributes": torch.zeros(4, config.num_attributes),
            "attribute_mask": torch.zeros(4, config.num_attributes),
        }

    x, y, z = batch(), batch(), batch()
    totals = [trainer.step(x, y, z)["total"] for _ in range(12)]
    assert sum(totals[-3:]) / 3 < sum(totals[:3]) / 3
    assert trainer.iteration == 12


def test_guide_loss_on_hand_made_inputs():
    image = torch.zeros(1, 3, 4, 4)
    target = torch.full((1, 3, 4, 4), 0.4)
    goal = 0.15 * image + 0.85 * target
    assert float(train_sdn.guide_loss(goal, image, target, alpha=0.85)) == pytest.approx(0.0)
    assert float(train_sdn.guide_loss(image, image, target, alpha=0.85)) == pytest.approx(0.85 * 0.4)
    # Only colour differs from the goal (same channel mean): zero on luma, not on all channels.
    tinted = goal + torch.tensor([0.1, -0.1, 0.0]).view(1, 3, 1, 1)
    assert float(train_sdn.guide_loss(tinted, image, target, alpha=0.85, luma=True)) == pytest.approx(0.0, abs=1e-7)
    assert float(train_sdn.guide_loss(tinted, image, target, alpha=0.85)) == pytest.approx(0.2 / 3)


def test_eigenface_guide_adds_signed_components():
    faces = torch.stack([torch.full((3, 4, 4), 0.2), torch.full((3, 4, 4), -0.2)])
    guide = train_sdn.EigenfaceGuide.fit(faces, components=1, scale=1.0)
    # One component along (a - b) with sd |a - b| / sqrt(2) over 48 values of 0.4: +-0.4 / sqrt(2) per value.
    high = guide(torch.ones(1, 32))
    low = guide(torch.zeros(1, 32))
    assert torch.allclose(high.abs(), torch.full_like(high, 0.4 / 2**0.5), atol=1e-5)
    assert torch.allclose(high, -low, atol=1e-6)
    assert float((high[:, 0, 0, 0] * high[:, 2, 3, 3])) > 0  # one direction over the whole crop
    assert torch.equal(guide(torch.ones(1, 32)), guide(torch.cat([torch.ones(1, 1), torch.zeros(1, 31)], 1)))
    loud = train_sdn.EigenfaceGuide.fit(faces, components=1, scale=10.0)
    assert float(loud(torch.ones(1, 32)).abs().max()) == 1.0  # clamped to the image range
    with pytest.raises(ValueError, match="password bits"):
        train_sdn.EigenfaceGuide.fit(faces, components=2, scale=1.0)(torch.ones(1, 1))
    with pytest.raises(ValueError, match="two face crops"):
        train_sdn.EigenfaceGuide.fit(faces[:1], components=1, scale=1.0)


def test_trainer_uses_the_guide_only_when_weighted():
    torch.manual_seed(0)
    config = sdn_config("tiny", width=8, num_residual_blocks=1, identity_hidden=32, num_identities=4)
    channel = train_sdn.ChannelSettings(jpeg_probability=0.0, resize_probability=0.0)
    weights = train_sdn.LossWeights(guide=1.0)
    with pytest.raises(ValueError, match="no eigenface guide"):
        train_sdn.SdnTrainer(build_sdn_from_config(config), torch.device("cpu"), weights, channel, 1, 1e-3,
                             use_amp=False, seed=0)
    faces = torch.rand(6, 3, 64, 64) * 2 - 1
    guide = train_sdn.EigenfaceGuide.fit(faces, components=4, scale=1.0)
    trainer = train_sdn.SdnTrainer(build_sdn_from_config(config), torch.device("cpu"), weights, channel, 1, 1e-3,
                                   use_amp=False, seed=0, guide=guide)
    batch = {"image": faces[:4], "identity": torch.arange(4), "attributes": torch.zeros(4, config.num_attributes),
             "attribute_mask": torch.zeros(4, config.num_attributes)}
    logs = trainer.step(batch, batch, batch)
    assert logs["guide"] > 0
    plain = train_sdn.SdnTrainer(build_sdn_from_config(config), torch.device("cpu"), train_sdn.LossWeights(),
                                 channel, 1, 1e-3, use_amp=False, seed=0)
    assert plain.step(batch, batch, batch)["guide"] == 0.0


def test_generator_step_trains_fext_only_when_asked():
    config = sdn_config("tiny", width=8, num_residual_blocks=1, identity_hidden=32, num_identities=4)
    channel = train_sdn.ChannelSettings(jpeg_probability=0.0, resize_probability=0.0)
    for flag in (False, True):
        network = build_sdn_from_config(config)
        trainer = train_sdn.SdnTrainer(network, torch.device("cpu"), train_sdn.LossWeights(), channel, 1, 1e-3,
                                       use_amp=False, seed=0, generator_trains_fext=flag)
        optimized = {id(p) for group in trainer.optimizer_g.param_groups for p in group["params"]}
        fext = {id(p) for p in network.feature_extractor.parameters()}
        assert (fext <= optimized) is flag and bool(fext & optimized) is flag
        assert (network.feature_extractor in trainer.frozen_in_generator_step) is not flag
