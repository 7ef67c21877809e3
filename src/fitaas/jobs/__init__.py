"""The work fronts and their machinery: a scan of a pallet, a stream of theory models,
sweeps and combinations, fit jobs (rankings, likelihood scans, parallel limits), and
what they share: the gathers, the dispatch loop, outcomes and toy blocks.
"""

__all__: list[str] = []
