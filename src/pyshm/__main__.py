"""``python -m pyshm``: the demo (``pyshm demo``); ``python -m pyshm ls|info|rm|demo ...``
runs the ``pyshm`` command (pyshm.cli)."""
import sys

from .cli import demo_main, main

COMMANDS = ("ls", "info", "rm", "demo", "--version")


def run(argv: list[str]) -> int:
    if argv and argv[0] in COMMANDS:
        return main(argv)
    return demo_main(argv, prog="python -m pyshm")


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
