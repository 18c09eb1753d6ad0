"""Billing: the price book, rating in integer micro-dollars, the free allowance, money and periods.

Pure modules, imported by name (``afinar.billing.pricebook``, ``.rating``, ``.allowance``,
``.buckets``, ``.money``, ``.periods``). Metering and spend limits are services:
``services/usage.py`` and ``services/spend_limits.py``.
"""
