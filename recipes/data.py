"""The recipe's ``data`` section: which sources, how many samples of each, for SFT and DPO, and the test split.

Placeholder owned by the data-builder issue (#3), which fills in sources, counts and intervention ranges.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class DataSection(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
