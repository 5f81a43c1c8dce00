"""Persistent lens defects and scene states, per camera (see ``tracker`` and docs/defects.md).

Modules: ``model`` (public types and tuning), ``motion`` (camera motion), ``moving``
(moving-camera evidence), ``fixed`` (fixed-camera evidence), ``tracks`` (pieces -> defects
and events), ``scene`` (covered / moved), ``tracker`` (the per-camera ``DefectTracker``).
"""

from .model import KINDS, Defect, DefectConfig, DefectEvent
from .tracker import DefectTracker

__all__ = ["KINDS", "Defect", "DefectConfig", "DefectEvent", "DefectTracker"]
