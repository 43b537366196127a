"""``kubectl carbonaware``: the kubectl plugin (plan, explain, release, hold, cancel, report).

Pure views (``plan``, ``explain``, ``report``) turn objects read from the cluster into rows
and text; ``app`` is the command line, the only part that reads the cluster (through
``carbonaware.k8s``) or a provider.
"""
