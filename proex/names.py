"""The names of the registered models, plug-ins and paired tests, without importing torch.

Reports order their rows by these (models as in the paper's Table 2); `proex.models.MODELS` and
`proex.plugins.PLUGINS` check at import that they register exactly these names, in this order.
"""

from __future__ import annotations

import typing
from typing import Literal

MODEL_NAMES = ("gccf", "lightgcn", "simgcl", "multvae", "ldiffrec", "cvga")
PLUGIN_NAMES = ("base", "proex", "rlmrec_con", "rlmrec_gen", "kar", "alpharec", "dmrec_g", "dmrec_c", "dmrec_m")
PairedTest = Literal["ttest", "wilcoxon"]  # the paper's paired t-test | Wilcoxon signed-rank (no normality)
TESTS: tuple[str, ...] = typing.get_args(PairedTest)
