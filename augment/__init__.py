"""Data augmentation for distillation transfer sets (TinyBERT and Tang et al. methods)."""
