"""The instrumentation core: compiled cells (``_cells_c``) or their pure twin (``_cells_py``)."""
