"""Afinar: a self-hosted fine-tuning platform that speaks the OpenAI fine-tuning API."""

__version__ = "0.1.0"
