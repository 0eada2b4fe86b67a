"""derms-bridge: the integration hub between Oracle Utilities CPMCS and Edge DERMS."""

__version__ = "0.1.0"
