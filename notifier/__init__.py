"""Sending, status tracking and fallback for Pawpost's outbound channels."""
