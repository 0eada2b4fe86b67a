"""The FastAPI app: trigger routes, the operations API, health."""
