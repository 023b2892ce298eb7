"""Device names: auto, explicit, and clear errors."""

import pytest
import torch

from hoe.devices import module_device, resolve_device
from hoe.errors import ConfigError


def test_auto_is_the_gpu_when_there_is_one():
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")


def test_bad_names_name_the_field():
    with pytest.raises(ConfigError, match=r"^device: 'gpu0' is not a device"):
        resolve_device("gpu0")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_refused():
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        resolve_device("cuda:0", field="device")


class _LM(torch.nn.Module):
    """A head on the CPU registered before input embeddings on the meta device."""

    def __init__(self):
        super().__init__()
        self.head = torch.nn.Linear(2, 2)
        self.embed = torch.nn.Embedding(3, 2, device="meta")

    def get_input_embeddings(self):
        return self.embed


def test_module_device_follows_the_input_embeddings():
    assert module_device(_LM()) == torch.device("meta")  # not the first parameter's device
    assert module_device(torch.nn.Linear(2, 2).to("meta")) == torch.device(
        "meta"
    )  # no embeddings: parameters
