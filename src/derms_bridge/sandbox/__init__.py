"""Simulated CPMCS and DERMS, and the local servers that the sandbox and the tests start."""
