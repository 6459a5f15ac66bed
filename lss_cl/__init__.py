"""lss-cl: continual learning on distilled (MTT-LSS) memories."""

__version__ = "0.1.0"
