"""`python -m framework` is the `reelforge` command."""

from .cli import main

if __name__ == "__main__":
    main()
