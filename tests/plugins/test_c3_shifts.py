"""shifts.shifted_windows: the windows it gathers, and its hand-written backward against autograd's."""

import torch

from nvc_c3.shifts import shifted_windows


def test_windows_are_the_slices():
    x = torch.arange(2 * 5 * 6 * 7, dtype=torch.float64).view(2, 5, 6, 7)
    starts = [(0, 0, 0), (1, 2, 3), (2, 1, 0)]
    out = shifted_windows(x, starts, (3, 4, 4))
    assert out.shape == (3, 2, 3, 4, 4)
    for i, (a, b, c) in enumerate(starts):
        assert torch.equal(out[i], x[:, a : a + 3, b : b + 4, c : c + 4])


def test_backward_matches_autograd_with_overlapping_windows():
    x = torch.randn(3, 4, 9, 8, dtype=torch.float64, requires_grad=True)
    starts = [(0, 0, 0), (0, 1, 1), (1, 0, 2), (0, 1, 1)]  # overlapping, one repeated: gradients must add
    assert torch.autograd.gradcheck(lambda v: shifted_windows(v, starts, (3, 7, 6)), (x,))


def test_gemm_over_windows_is_the_convolution():
    """The use in the synthesis: nine 3×3 windows and one matmul equal conv2d (valid) frame by frame."""
    torch.manual_seed(0)
    x = torch.randn(3, 2, 10, 12, dtype=torch.float64)  # (C, T, H, W)
    conv = torch.nn.Conv2d(3, 4, 3).double()
    windows = shifted_windows(x, [(0, dy, dx) for dy in range(3) for dx in range(3)], (2, 8, 10))
    weight = conv.weight.permute(0, 2, 3, 1).reshape(4, -1)
    got = (weight @ windows.reshape(27, -1) + conv.bias[:, None]).view(4, 2, 8, 10)
    want = conv(x.transpose(0, 1)).transpose(0, 1)
    torch.testing.assert_close(got, want)
