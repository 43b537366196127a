"""Pydantic models that mirror the CRDs, condition vocabulary, labels and shared value types."""
