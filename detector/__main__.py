"""`python -m detector ...` (and `torchrun -m detector train ...`)."""

from detector.cli import main

if __name__ == "__main__":
    main()
