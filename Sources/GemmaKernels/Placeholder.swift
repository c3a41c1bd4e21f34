// Placeholder; replaced as the target is filled.
