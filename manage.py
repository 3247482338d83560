#!/usr/bin/env python
"""Django's command-line utility; `finops` is the same thing, installed as a console script."""

from finops.cli import main

if __name__ == "__main__":
    main()
