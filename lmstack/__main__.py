"""`python -m lmstack` (and `torchrun -m lmstack`) runs the CLI."""

from lmstack.cli import main

if __name__ == "__main__":
    main()
