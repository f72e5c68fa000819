"""Contract tests every registered defense and attack gets for free."""
