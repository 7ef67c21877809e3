"""What runs on a worker: the task entry points and the worker cache (tasks), and how a
task names and carries its workspace (payloads; engines use these without pyhf).
"""

__all__: list[str] = []
