"""Training: permutation-aware losses and the resumable trainer."""
