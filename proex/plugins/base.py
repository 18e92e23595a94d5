"""A plug-in turns a base model into a training objective and a scorer. `Base` is the identity plug-in:
the model's own loss and scores. ProEx, RLMRec and DMRec are siblings that override these two methods.

Plug-ins own the model (`self.model`), so one `nn.Module` holds every trainable parameter of a run and the
Σ‖θ‖² penalty and checkpoints cover the plug-in's parameters too (HKUDS/RLMRec encoder/models/base_model.py and
loss_utils.py: reg_params runs over all parameters, the profile MLP included).
"""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor, nn

from ..metrics import Scorer
from ..models.base import BaseModel


class Plugin(nn.Module):
    """Interface: `loss_terms(batch) -> {name: scalar}` (summed by the trainer) and `scorer() -> Scorer`,
    called once per evaluation pass so work shared by all users (propagation, mapped profiles) runs once."""

    name: ClassVar[str] = "plugin"
    # Its settings dataclass, or None for a plug-in without settings; official values: `proex.reference`.
    Config: ClassVar[type | None] = None
    # True when the plug-in reads a ProfileBank (a cell must then name `profiles`).
    needs_profiles: ClassVar[bool] = False
    # True when loss_terms reads batch.distinct(): the sampler then computes it for the whole epoch at once.
    uses_distinct: ClassVar[bool] = False

    def __init__(self, model: BaseModel, cfg=None, bank=None):
        """Every plug-in is built as cls(model, cfg, bank): cfg an instance of `Config` (None without one),
        bank a ProfileBank (None unless `needs_profiles`). Refuses a model `refusal` names."""
        super().__init__()
        reason = self.refusal(type(model))
        if reason:
            raise ValueError(reason)
        self.model = model

    @classmethod
    def refusal(cls, model_cls: type[BaseModel]) -> str | None:
        """Why this plug-in cannot run on the base model class `model_cls`, or None: the one check behind
        `proex train`, `proex config` and grid files (`proex.plugins.check_pair`), before any data is read."""
        return None

    def loss_terms(self, batch) -> dict[str, Tensor]:
        raise NotImplementedError

    def scorer(self) -> Scorer:
        raise NotImplementedError


class Base(Plugin):
    """No side information: the base recommender alone."""

    name = "base"

    def loss_terms(self, batch) -> dict[str, Tensor]:
        enc = self.model.encode(batch)
        return {**enc.losses, **self.model.risk(batch, enc.state, None)}

    def scorer(self) -> Scorer:
        model = self.model
        if model.state_covers_all_rows:  # pairwise: propagate every user and item once per evaluation
            return model.score_tables(model.encode(None).state)
        return lambda batch: model.score(batch, model.encode(batch).state, None)
