"""`python -m proex.cli ...`: the same as the `proex` command."""

from . import main

if __name__ == "__main__":
    raise SystemExit(main())
