# SPDX-License-Identifier: GPL-3.0-or-later
import sys

from casemail.cli import main

# Guarded: the intake processes are started with multiprocessing's spawn, which imports this module
# again in each process, and there it must not run the command a second time.
if __name__ == "__main__":
    sys.exit(main())
