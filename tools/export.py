"""Same as `detector export ...`: a thin wrapper of the package's command.

Usage:

    python tools/export.py --help
"""

from detector.commands.export import export

if __name__ == "__main__":
    export()
