"""Compatibility entry point for git hooks installed before the service package existed.

Contract: bare repos whose hooks run `python -m reconciler.hooks pre-receive|post-receive`
keep working; everything is in `reconciler.service.hooks`.
"""
import sys

from reconciler.service.hooks import main

if __name__ == "__main__":
    sys.exit(main())
