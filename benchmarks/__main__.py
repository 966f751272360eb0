"""``python -m benchmarks``: every case, every implementation, side by side in one run."""

# Guarded: asv imports every module of the benchmark dir while discovering.
if __name__ == "__main__":
    from ._runner import main

    raise SystemExit(main())
