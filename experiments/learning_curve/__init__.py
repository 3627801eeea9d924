"""Learning curve of the ``cpu`` model on DFT 3BPA: test errors against the training-set size."""
