"""``python -m kancore --cmake-dir``: where the pip-installed C++ package lives.

Pass the printed directory as ``-Dkancore_DIR=...`` (or prepend it to CMAKE_PREFIX_PATH) so that
``find_package(kancore CONFIG REQUIRED)`` finds the headers, the static library and its config.
"""
import argparse
import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parent


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m kancore", description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--cmake-dir", action="store_true", help="directory of kancoreConfig.cmake")
    group.add_argument("--include-dir", action="store_true", help="directory of the C++ headers")
    group.add_argument("--version", action="store_true", help="the package version")
    args = parser.parse_args(argv)
    if args.version:
        from . import __version__

        print(__version__)
        return 0
    path = _ROOT / ("lib/cmake/kancore" if args.cmake_dir else "include")
    if not path.is_dir():
        print(f"kancore: {path} is missing (this installation ships no C++ package)", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
