"""The gateway model: decorators, handler metadata, context and the per-event pipeline."""
