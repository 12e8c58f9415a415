"""cnnops.filters against hand-computed results, and the `cnnops filters` picture."""

import math

import pytest
import torch
import torch.nn.functional as F

from cnnops import cli, filters


def step_edge(height: int = 6, width: int = 6, column: int = 3) -> torch.Tensor:
    """Dark (0) left of `column`, bright (1) from it on."""
    image = torch.zeros(height, width)
    image[:, column:] = 1
    return image


def test_sobel_on_a_step_edge():
    # sobel_x at column j is (x[j+1] - x[j-1]) * (1 + 2 + 1): 4 on the two columns either
    # side of the step, 0 elsewhere; the replicated border adds no edge of its own.
    expected = torch.zeros(6, 6)
    expected[:, 2:4] = 4
    torch.testing.assert_close(filters.apply(step_edge(), filters.sobel_x()), expected)
    torch.testing.assert_close(filters.apply(step_edge(), filters.sobel_y()), torch.zeros(6, 6))
    torch.testing.assert_close(filters.edge_magnitude(step_edge()), expected)
    # A horizontal edge is sobel_y's: transposed image, transposed answer.
    torch.testing.assert_close(filters.apply(step_edge().T, filters.sobel_y()), expected.T)


def test_sobel_with_zero_padding_sees_the_border():
    # Zero padding makes the bright right border a falling edge: -4 in the last column,
    # -3 / 3 in the corners, where only one neighbour row (weights 1 + 2) is inside.
    out = filters.apply(step_edge(), filters.sobel_x(), padding_mode="zeros")
    expected = torch.zeros(6, 6)
    expected[:, 2:4] = 4
    expected[:, 5] = -4
    expected[[0, 5], 2:4] = 3
    expected[[0, 5], 5] = -3
    torch.testing.assert_close(out, expected)


def test_kernels_by_hand():
    side = math.exp(-0.5)
    line = torch.tensor([side, 1.0, side]) / (1 + 2 * side)
    torch.testing.assert_close(filters.gaussian(3, 1.0), torch.outer(line, line))
    five = filters.gaussian(5, 1.0)
    assert five.shape == (5, 5)
    torch.testing.assert_close(five.sum(), torch.tensor(1.0))
    torch.testing.assert_close(five, five.T)
    torch.testing.assert_close(five, five.flip(0))
    assert five[2, 2] == five.max()
    torch.testing.assert_close(filters.box_blur(3), torch.full((3, 3), 1 / 9))
    for name in ("sobel_x", "sobel_y", "laplacian", "cross"):
        assert filters.BANK[name][0].sum().item() == pytest.approx(0, abs=1e-6), name
    for name in ("sharpen", "emboss", "box_blur", "gaussian_3x3", "gaussian_5x5"):
        assert filters.BANK[name][0].sum().item() == pytest.approx(1, abs=1e-6), name


def test_flat_and_linear_images():
    ramp = torch.arange(7.0).expand(7, 7).contiguous()  # brightness grows to the right by 1
    interior = (slice(1, -1), slice(1, -1))
    torch.testing.assert_close(filters.apply(ramp, filters.laplacian())[interior],
                               torch.zeros(5, 5))
    torch.testing.assert_close(filters.apply(ramp, filters.sobel_x())[interior],
                               torch.full((5, 5), 8.0))
    flat = torch.full((5, 8), 0.25)
    for name, (kernel, display) in filters.BANK.items():
        expected = flat if display == "image" else torch.zeros_like(flat)
        torch.testing.assert_close(filters.apply(flat, kernel), expected, msg=name)


def test_cross_detector_prefers_a_plus():
    plus = torch.zeros(5, 5)
    plus[2, 1:4] = 1
    plus[1:4, 2] = 1
    diagonal = torch.eye(5)
    response = filters.apply(plus, filters.cross())[2, 2]
    assert response == pytest.approx(5.0)
    assert filters.apply(diagonal, filters.cross())[2, 2] < 0


@pytest.mark.parametrize("padding_mode", ["replicate", "reflect", "zeros"])
def test_rgb_is_filtered_channel_by_channel_like_torch(padding_mode):
    image = torch.rand(2, 3, 9, 11, dtype=torch.float64)
    kernel = filters.gaussian(5, 1.3).double()
    out = filters.apply(image, kernel, padding_mode)
    padded = image if padding_mode == "zeros" else F.pad(image, (2, 2, 2, 2), mode=padding_mode)
    reference = F.conv2d(padded, kernel.expand(3, 1, 5, 5), padding=2 if padding_mode == "zeros"
                         else 0, groups=3)
    assert out.dtype == torch.float64 and out.shape == image.shape
    torch.testing.assert_close(out, reference)
    torch.testing.assert_close(filters.apply(image[1], kernel, padding_mode), out[1])
    torch.testing.assert_close(filters.apply(image[1, 2], kernel, padding_mode), out[1, 2])


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="odd"):
        filters.apply(torch.rand(5, 5), torch.ones(2, 2))
    with pytest.raises(ValueError, match="padding_mode"):
        filters.apply(torch.rand(5, 5), filters.sobel_x(), padding_mode="circular!")
    with pytest.raises(ValueError, match="size"):
        filters.gaussian(4, 1.0)


def test_cnnops_filters_writes_a_png_grid(tmp_path):
    pytest.importorskip("matplotlib")
    from PIL import Image
    picture = (torch.rand(40, 30, 3) * 255).to(torch.uint8).numpy()
    path = tmp_path / "colour.jpg"
    Image.fromarray(picture).save(path)
    assert cli.main(["filters", "--image", str(path), "--out", str(tmp_path / "out")]) == 0
    written = tmp_path / "out" / "filters_colour.png"
    assert written.stat().st_size > 1000
    with Image.open(written) as grid:
        assert grid.format == "PNG"


def test_cnnops_filters_on_the_cameraman(tmp_path):
    pytest.importorskip("skimage")
    pytest.importorskip("matplotlib")
    assert cli.main(["filters", "--image", "camera", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "filters_camera.png").stat().st_size > 10_000


def test_cnnops_filters_missing_image(tmp_path, capsys):
    assert cli.main(["filters", "--image", str(tmp_path / "none.png"), "--out",
                     str(tmp_path)]) == 2
    assert "no image file" in capsys.readouterr().err
