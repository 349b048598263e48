"""Box-aware training augmentation (albumentations) built from the config's `augment:` list."""
