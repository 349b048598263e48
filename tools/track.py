"""Same as `detector track ...`: a thin wrapper of the package's command.

Usage:

    python tools/track.py --help
"""

from detector.commands.track import track

if __name__ == "__main__":
    track()
