"""On-the-fly active learning of 3BPA at 600 K: GMM trigger vs ensemble trigger vs random."""
