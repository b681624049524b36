"""A training method from outside tinylm, as a plugin registers one: this config module (pydantic only, so `tinylm
--help` stays instant) and its method module (smoothing.py). Nothing else: the command, the flow, the deployment and
the config reference come from the registration. Loaded with TINYLM_PLUGINS=tests.plugins.smoothing_config."""

from pydantic import Field

from tinylm.config import TrainConfig
from tinylm.registry import Input, register_method


class SmoothingConfig(TrainConfig):
    """Language modelling with label smoothing: the target gets 1 - smoothing, the rest shared by the vocabulary."""

    smoothing: float = Field(0.1, ge=0.0, lt=1.0, description="probability mass spread over the whole vocabulary")


register_method(
    "smoothed-train",
    "Pretrain or fine-tune with label-smoothed cross entropy.",
    config="tests.plugins.smoothing_config:SmoothingConfig",
    method="tests.plugins.smoothing",
    data=Input("--data", "token shards or chat data"),
)
