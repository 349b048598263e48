"""Same as `detector evaluate ...`: a thin wrapper of the package's command.

Usage:

    python tools/evaluate.py --help
"""

from detector.commands.evaluate import evaluate

if __name__ == "__main__":
    evaluate()
