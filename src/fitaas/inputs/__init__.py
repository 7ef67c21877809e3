"""What fitaas reads: pallets (a workspace and its signal points: files, validation, the
``Pallet`` type), published archives (downloads), theory models, combinations of
workspaces, and the example it writes.
"""

__all__: list[str] = []
