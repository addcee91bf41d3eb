"""``upload``: host-to-device copies that do not stall the host."""

import numpy as np
import pytest
import torch

from ilrm_ros.transfer import upload


def test_upload_on_the_cpu_converts_the_dtype_only():
    x = torch.arange(6, dtype=torch.uint8).reshape(2, 3)
    y = upload(x, "cpu", torch.float32)
    assert y.dtype == torch.float32 and y.device.type == "cpu" and torch.equal(y, x.float())
    assert upload(x, torch.device("cpu")) is x  # nothing to move: no copy


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_upload_to_cuda_is_a_copy_the_source_can_outlive():
    image = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    expected = torch.from_numpy(image.copy())
    y = upload(torch.from_numpy(image).permute(2, 0, 1), "cuda")  # a non-contiguous view of the source
    image[:] = 0  # the source changes right after the call: the queued copy must not see it
    assert y.is_cuda and torch.equal(y.cpu(), expected.permute(2, 0, 1))
