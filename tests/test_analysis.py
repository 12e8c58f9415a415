"""Output sizes, receptive fields, parameter and FLOP counts, against hand-computed values."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cnnops
from cnnops.analysis import conv_output_size, pool_output_size


@pytest.mark.parametrize("size, kernel, stride, padding, dilation", [
    (28, 3, 1, 1, 1), (224, 7, 2, 3, 1), (7, 3, 2, 0, 1), (13, 5, 3, 2, 2), (1, 1, 1, 0, 1),
    (17, 4, 2, 1, 1),
])
def test_conv_output_size_matches_torch(size, kernel, stride, padding, dilation):
    x = torch.zeros(1, 1, size, size)
    w = torch.zeros(1, 1, kernel, kernel)
    expected = F.conv2d(x, w, stride=stride, padding=padding, dilation=dilation).shape[-1]
    assert conv_output_size(size, kernel, stride, padding, dilation) == expected


@pytest.mark.parametrize("size, kernel, stride, padding, dilation, ceil_mode", [
    (5, 2, 2, 0, 1, True), (6, 3, 2, 1, 1, True), (7, 3, 2, 1, 1, True), (8, 3, 3, 1, 1, True),
    (112, 3, 2, 1, 1, False), (9, 2, 2, 1, 2, True), (10, 4, 3, 2, 1, True),
])
def test_pool_output_size_matches_torch_including_ceil_mode(size, kernel, stride, padding,
                                                            dilation, ceil_mode):
    x = torch.zeros(1, 1, size, size)
    expected = F.max_pool2d(x, kernel, stride, padding, dilation, ceil_mode=ceil_mode).shape[-1]
    assert pool_output_size(size, kernel, stride, padding, dilation, ceil_mode) == expected


def test_output_size_of_pairs_is_a_pair():
    assert conv_output_size((7, 9), (3, 5), 2, (1, 2)) == (4, 5)
    assert pool_output_size((7, 8), 3, 2, 1, ceil_mode=True) == (4, 5)


def test_output_size_refuses_a_window_larger_than_the_input():
    with pytest.raises(ValueError, match="larger"):
        conv_output_size(3, 5)
    with pytest.raises(ValueError, match="kernel"):
        conv_output_size(8, 0)


def test_receptive_field_of_the_seed_stack_is_16():
    # conv3, conv3, pool2/2, conv3, conv3, pool2/2: 1+2+2 = 5, 6, 6+4+4 = 14, 16.
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1), nn.MaxPool2d(2),
        nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1), nn.MaxPool2d(2))
    rows = cnnops.summary(model, (3, 32, 32)).rows
    assert [row["receptive_field"][0] for row in rows] == [3, 5, 6, 10, 14, 16]
    assert [row["jump"][0] for row in rows] == [1, 1, 2, 2, 2, 4]


def test_stem_7x7_stride2_then_pool():
    model = nn.Sequential(nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False), nn.ReLU(),
                          nn.MaxPool2d(3, stride=2, padding=1))
    result = cnnops.summary(model, (1, 3, 224, 224))
    conv, relu, pool = result.rows
    assert conv["output_shape"] == (1, 64, 112, 112)
    assert conv["params"] == 64 * 3 * 49
    assert conv["flops"] == 2 * 64 * 112 * 112 * 3 * 49
    assert conv["receptive_field"] == (7, 7) and conv["jump"] == (2, 2)
    assert relu["receptive_field"] == (7, 7)
    assert pool["output_shape"] == (1, 64, 56, 56)
    assert pool["receptive_field"] == (11, 11) and pool["jump"] == (4, 4)
    assert result.total_params == 64 * 3 * 49
    assert "MaxPool2d" in str(result)


def test_dilation_widens_the_receptive_field():
    rows = cnnops.summary(nn.Conv2d(1, 1, 3, dilation=2), (1, 9, 9)).rows
    assert rows[0]["receptive_field"] == (5, 5)


def test_linear_flops_and_params():
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 5))
    result = cnnops.summary(model, (2, 3, 2, 2))
    assert result.rows[1]["flops"] == 2 * 2 * 12 * 5
    assert result.total_params == 12 * 5 + 5


def test_summary_names_the_layer_that_failed():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(10, 2))
    with pytest.raises(RuntimeError, match=r"layer '2' \(Linear\).*\(1, 196\)"):
        cnnops.summary(model, (3, 9, 9))


def test_summary_refuses_a_bad_input_size():
    with pytest.raises(ValueError, match="input_size"):
        cnnops.summary(nn.Conv2d(3, 4, 3), (3, 9))
