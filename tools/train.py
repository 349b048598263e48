"""Same as `detector train ...`: a thin wrapper of the package's command.

Usage:

    python tools/train.py --help
"""

from detector.commands.train import train

if __name__ == "__main__":
    train()
