"""streamlearn-service: per-key online learning on an event stream, with Prometheus metrics
and crash-safe checkpoints. Installed as ``streamlearn.service``."""
