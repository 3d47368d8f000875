"""`python -m reelforge` is the `reelforge` command."""

from reelforge.cli.core import main

if __name__ == "__main__":
    main()
