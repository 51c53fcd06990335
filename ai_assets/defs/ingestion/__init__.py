"""Layer 1: landing files to validated messages, with quarantine, checks and sensors."""
