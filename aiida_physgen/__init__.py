"""aiida-physgen: generative models for candidate structures, screened and DFT-verified in AiiDA."""

__version__ = "0.1.0"
