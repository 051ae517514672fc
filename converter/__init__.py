"""Model tools for edge-verify: import, train, quantize and evaluate face encoders (needs the `convert` extra)."""
