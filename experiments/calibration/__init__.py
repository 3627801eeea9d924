"""Calibrated uncertainty: GMM NLL, ensemble σ and LLPR mapped to force errors, with conformal
intervals, on the models of an on-the-fly run."""
