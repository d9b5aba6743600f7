"""The NVE agent: ``role`` (the role), ``desired`` (configuration -> kernel state, pure),
``drift`` (kernel events judged against what the agent wants), ``status`` (what <get> reports).
"""
