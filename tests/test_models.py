"""Networks: exact published parameter counts, shapes, gradients, FiLM, CryoRes heads and factories."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from torch import nn

from cryomaps.models import (
    CryoResOutput,
    Discriminator3d,
    UNetPlusPlus3d,
    build_cryores,
    build_discriminator,
    build_generator,
    build_network,
    global_resolution_bins,
    init_published_weights,
    local_resolution_map,
    relative_resolution_bins,
)
from cryomaps.models.cryores import log_power_spectrum

TINY_GENERATOR = [4, 8, 16]  # stride 4


def count_parameters(module: nn.Module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())


@pytest.fixture(autouse=True)
def seeded():
    torch.manual_seed(0)


# --- struc2map generator ----------------------------------------------------------------------


def test_published_generator_has_exactly_the_published_parameter_count():
    assert count_parameters(build_generator()) == 10_289_333


def test_small_generator_is_a_few_hundred_thousand_parameters_at_most():
    assert count_parameters(build_generator("small")) < 300_000


@pytest.mark.parametrize("spatial", [(12, 12, 12), (16, 16, 16), (12, 16, 20)])
def test_generator_keeps_the_grid_for_odd_and_even_multiples_of_the_stride(spatial):
    generator = build_generator(channels=TINY_GENERATOR, out_channels=2).eval()
    assert generator.stride == 4
    with torch.no_grad():
        output = generator(torch.randn(2, 1, *spatial))
    assert output.shape == (2, 2, *spatial)


def test_four_level_generator_keeps_the_grid():
    generator = build_generator(channels=[2, 4, 8, 16]).eval()
    assert generator.stride == 8
    with torch.no_grad():
        assert generator(torch.randn(1, 1, 8, 16, 24)).shape == (1, 1, 8, 16, 24)


def test_generator_rejects_sizes_that_are_not_multiples_of_the_stride():
    with pytest.raises(ValueError, match="multiples of the network stride 4"):
        build_generator(channels=TINY_GENERATOR)(torch.randn(1, 1, 16, 16, 18))


def test_small_generator_trains_forward_and_backward():
    generator = build_generator("small")
    output = generator(torch.randn(2, 1, 16, 16, 16))
    nn.functional.smooth_l1_loss(output, torch.rand_like(output)).backward()
    gradients = [parameter.grad for parameter in generator.parameters()]
    assert all(gradient is not None and torch.isfinite(gradient).all() for gradient in gradients)


def test_film_is_off_by_default_and_rejects_a_resolution():
    generator = build_generator(channels=TINY_GENERATOR)
    assert generator.embedding is None
    with pytest.raises(ValueError, match="no resolution_conditioning"):
        generator(torch.randn(1, 1, 8, 8, 8), resolution=torch.tensor([3.0]))


def test_film_starts_as_identity_and_then_depends_on_resolution():
    generator = build_generator(channels=TINY_GENERATOR, resolution_conditioning=True).eval()
    volume = torch.randn(1, 1, 8, 8, 8).expand(2, -1, -1, -1, -1)
    resolutions = torch.tensor([3.0, 8.0])
    with torch.no_grad():
        at_init = generator(volume, resolution=resolutions)
        assert torch.allclose(at_init[0], at_init[1])
        for block in generator.nodes.values():
            nn.init.normal_(block.film.weight, std=0.1)
        trained = generator(volume, resolution=resolutions)
    assert not torch.allclose(trained[0], trained[1], atol=1e-4)
    with pytest.raises(ValueError, match="pass resolution"):
        generator(volume)


# --- discriminator ----------------------------------------------------------------------------


@pytest.mark.parametrize("preset", ["published", "strided"])
def test_discriminator_has_exactly_the_published_parameter_count(preset):
    assert count_parameters(build_discriminator(preset)) == 1_190_812


@pytest.mark.parametrize("preset", ["published", "strided", "small"])
def test_discriminator_gives_one_logit_per_map(preset):
    discriminator = build_discriminator(preset).eval()
    with torch.no_grad():
        assert discriminator(torch.randn(3, 1, 16, 16, 16)).shape == (3, 1)


def test_small_discriminator_trains_forward_and_backward():
    discriminator = Discriminator3d(channels=[4, 8, 8, 16], hidden_features=[8], strided=True)
    logits = discriminator(torch.randn(2, 1, 16, 16, 16))
    nn.functional.binary_cross_entropy_with_logits(logits, torch.ones_like(logits)).backward()
    assert all(parameter.grad is not None for parameter in discriminator.parameters())


# --- CryoRes ----------------------------------------------------------------------------------


def test_relative_bins_are_the_37_published_centres():
    expected = [-5.0, -4.5, -4.0, -3.5, -3.0, -2.5, -2.0, -1.5, -1.0]
    expected += [-0.9, -0.8, -0.7, -0.6, -0.5, -0.4, -0.3, -0.2, -0.1, 0.0]
    expected += [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    expected += [1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0]
    bins = relative_resolution_bins()
    assert bins.shape == (37,)
    assert torch.equal(bins, torch.tensor(expected))
    assert torch.all(bins[1:] > bins[:-1])
    assert torch.equal(bins, -bins.flip(0))


def test_global_bins_span_1_to_10_angstrom():
    assert torch.equal(global_resolution_bins(), torch.arange(1.0, 11.0))


@pytest.mark.parametrize("spatial", [(12, 12, 12), (8, 16, 20)])
def test_cryores_head_shapes(spatial):
    network = build_cryores().eval()
    assert network.stride == 4
    with torch.no_grad():
        output = network(torch.randn(2, 1, *spatial))
    assert output.global_logits.shape == (2, 10)
    assert output.global_resolution.shape == (2,)
    assert output.relative_logits.shape == (2, 37, *spatial)
    assert output.relative_resolution.shape == (2, 1, *spatial)
    assert output.mask_logits.shape == (2, 1, *spatial)
    assert torch.all((output.global_resolution >= 1) & (output.global_resolution <= 10))
    assert torch.all(output.relative_resolution.abs() <= 5)


def test_cryores_global_head_is_small_and_the_network_trains():
    network = build_cryores("small")
    assert count_parameters(network.global_head) < 50_000
    output = network(torch.randn(2, 1, 8, 8, 8))
    loss = output.global_resolution.sum() + output.relative_resolution.mean() + output.mask_logits.mean()
    loss.backward()
    assert all(parameter.grad is not None for parameter in network.parameters())


def test_cryores_rejects_sizes_that_are_not_multiples_of_the_stride():
    with pytest.raises(ValueError, match="stride 4"):
        build_cryores()(torch.randn(1, 1, 8, 8, 10))


def test_soft_argmax_reaches_the_extreme_global_bins():
    network = build_cryores("small").eval()
    with torch.no_grad():
        network.global_head[-1].bias.copy_(torch.tensor([50.0] + [0.0] * 9))
        network.global_head[-1].weight.zero_()
        assert torch.allclose(network(torch.randn(1, 1, 4, 4, 4)).global_resolution, torch.tensor([1.0]))


def _reference_tukey(length: int) -> np.ndarray:
    """Tukey window with cosine ramps over a quarter of the length at each end (as scipy.signal.windows.tukey(n, 0.5))."""
    x = np.linspace(0.0, 1.0, length)
    window = np.ones(length)
    low, high = x < 0.25, x > 0.75
    window[low] = 0.5 * (1 + np.cos(2 * np.pi / 0.5 * (x[low] - 0.25)))
    window[high] = 0.5 * (1 + np.cos(2 * np.pi / 0.5 * (x[high] - 0.75)))
    return window


def _reference_log_power_spectrum(volume: np.ndarray, shells: int) -> np.ndarray:
    """Float64 numpy reference of log_power_spectrum for one (X, Y, Z) volume, full complex FFT."""
    centred = volume - volume.mean()
    tapers = [_reference_tukey(n) for n in volume.shape]
    taper = tapers[0][:, None, None] * tapers[1][None, :, None] * tapers[2][None, None, :]
    power = np.abs(np.fft.fftn(centred * taper)) ** 2 / np.sum(taper**2)
    frequency = np.meshgrid(*[np.fft.fftfreq(n) for n in volume.shape], indexing="ij")
    shell = np.floor(np.sqrt(sum(f**2 for f in frequency)) / 0.5 * shells).astype(int)
    return np.array([np.log10(power[shell == i].mean() + 1e-6) for i in range(shells)])


@pytest.mark.parametrize("shape", [(32, 32, 32), (24, 28, 20)])
def test_log_power_spectrum_matches_a_float64_full_fft_reference(shape):
    volume = np.random.default_rng(1).normal(size=shape)
    volume = np.cumsum(volume, axis=0) * 0.3 + volume  # not white: a falling spectrum along x
    ours = log_power_spectrum(torch.from_numpy(volume)[None, None], 12)[0].numpy()
    np.testing.assert_allclose(ours, _reference_log_power_spectrum(volume, 12), atol=1e-6)


@pytest.mark.parametrize("size", [32, 48])
def test_log_power_spectrum_of_white_noise_is_flat_at_its_variance(size):
    noise = 3.0 * torch.randn(8, 1, size, size, size, dtype=torch.float64)
    mean_spectrum = log_power_spectrum(noise, 16).mean(dim=0)
    assert torch.all((mean_spectrum[3:] - math.log10(9.0)).abs() < 0.05)


def test_spectral_global_head_sees_the_noise_level():
    network = build_cryores("small", levels=3, spectral_shells=16)
    assert network.global_head[0].in_features == 32 + 16
    volume = torch.randn(2, 1, 16, 16, 16)
    output = network(volume)
    output.global_resolution.sum().backward()
    spectral_weights = network.global_head[0].weight.grad[:, 32:]
    assert spectral_weights.abs().sum() > 0
    with torch.no_grad():
        network.global_head[0].weight[:, :32] = 0  # only the spectrum reaches the global head now
        quiet, loud = network(volume).global_resolution, network(volume * 10).global_resolution
    assert not torch.allclose(quiet, loud)


def _fake_output(mask_logits: torch.Tensor) -> CryoResOutput:
    spatial = mask_logits.shape[-3:]
    return CryoResOutput(
        global_logits=torch.zeros(2, 10),
        global_resolution=torch.tensor([3.0, 6.0]),
        relative_logits=torch.zeros(2, 37, *spatial),
        relative_resolution=torch.full((2, 1, *spatial), -0.5),
        mask_logits=mask_logits,
    )


def test_local_resolution_map_is_global_plus_relative_inside_and_background_outside():
    mask_logits = torch.full((2, 1, 2, 2, 2), -1.0)
    mask_logits[:, :, 0] = 2.0
    output = _fake_output(mask_logits)
    local = local_resolution_map(output)
    assert local.shape == (2, 1, 2, 2, 2)
    assert torch.all(local[0, :, 0] == 2.5) and torch.all(local[1, :, 0] == 5.5)
    assert torch.all(local[:, :, 1] == 100.0)
    assert torch.all(local_resolution_map(output, background_resolution=0.0)[:, :, 1] == 0.0)


# --- initialisation and factories -------------------------------------------------------------


def test_published_init_draws_conv_weights_with_std_0_01_and_zero_biases():
    discriminator = Discriminator3d()
    linear_before = discriminator.classifier[0].weight.clone()
    init_published_weights(discriminator)
    conv = discriminator.convs[-1]
    assert conv.weight.std().item() == pytest.approx(0.01, rel=0.05)
    assert torch.all(conv.bias == 0)
    assert torch.equal(discriminator.classifier[0].weight, linear_before)


def test_factories_reject_non_plain_hyperparameters_and_unknown_names():
    with pytest.raises(TypeError, match="plain Python"):
        build_generator(channels=torch.tensor([4, 8]))
    with pytest.raises(ValueError, match="unknown preset"):
        build_cryores("huge")
    with pytest.raises(ValueError, match="unknown network kind"):
        build_network("vae")


def test_weights_and_hyperparameters_reload_with_weights_only():
    hyperparameters = {"kind": "generator", "preset": "small", "channels": [4, 8]}
    hyperparameters["resolution_conditioning"] = True
    original = build_network(**hyperparameters).eval()
    buffer = io.BytesIO()
    torch.save({"hyperparameters": hyperparameters, "state_dict": original.state_dict()}, buffer)
    buffer.seek(0)
    checkpoint = torch.load(buffer, weights_only=True)
    restored = build_network(**checkpoint["hyperparameters"]).eval()
    restored.load_state_dict(checkpoint["state_dict"])
    assert isinstance(restored, UNetPlusPlus3d)
    volume, resolution = torch.randn(1, 1, 4, 4, 4), torch.tensor([4.0])
    with torch.no_grad():
        assert torch.equal(restored(volume, resolution=resolution), original(volume, resolution=resolution))


def test_upsampling_after_inference_mode_still_trains():
    """The cached interpolation matrices made under inference mode (generation) serve training later."""
    from cryomaps.models.layers import upsample_like

    volume, reference = torch.randn(1, 2, 4, 5, 6), torch.zeros(1, 1, 8, 10, 12)
    with torch.inference_mode():
        expected = upsample_like(volume, reference)
    trained = volume.clone().requires_grad_()
    result = upsample_like(trained, reference)
    result.sum().backward()
    torch.testing.assert_close(result.detach(), expected)
    torch.testing.assert_close(result.detach(), nn.functional.interpolate(volume, size=(8, 10, 12), mode="trilinear", align_corners=True))
    assert trained.grad.shape == volume.shape
