"""Avalanche integration: per-experience memory storage policies and replay plugins."""

from .buffers import DistilledBuffer, PerExperienceMemoryBuffer, RandomExemplarBuffer, shrink
from .plugins import DSAPlugin, SoftReplayPlugin

__all__ = ["DistilledBuffer", "PerExperienceMemoryBuffer", "RandomExemplarBuffer", "shrink",
           "DSAPlugin", "SoftReplayPlugin"]
