"""Pure PyTorch / NumPy layer of aiida-physgen: no AiiDA import anywhere below this package."""
