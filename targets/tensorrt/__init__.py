"""TensorRT backend: `target` is the Target; the other modules are its parts, each usable without TensorRT
except `engine` and `runner` (docs/architecture.md)."""
