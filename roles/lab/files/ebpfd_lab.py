"""Lab hosts for ebpf.deploy (the lab role's worker, run as a script on the controller).

The lab tool is the package ``labtool`` beside this file (its docstring tells the whole story);
this script keeps the path the role, the tests, molecule and the Makefile run.
"""
from __future__ import annotations

import sys

from labtool.cli import main

if __name__ == "__main__":
    sys.exit(main())
