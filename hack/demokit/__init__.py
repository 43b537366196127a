"""The parts of ``hack/demo.py`` (``make demo``): ``common`` (settings, output, state,
reading objects), ``environment`` (processes, the venv, the plane, the namespace), ``jobs``
(the example jobs as applied, the grid outlook) and ``show`` (progress and the summary)."""
