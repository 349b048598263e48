"""Same as `detector detect ...`: a thin wrapper of the package's command.

Usage:

    python tools/detect.py --help
"""

from detector.commands.detect import detect

if __name__ == "__main__":
    detect()
