"""What fitaas gives back: scan results as data (JSON, JSONL, CSV), pictures (CLs planes,
fits, toys) and the HTML report.
"""

__all__: list[str] = []
