import sys

from .train import main

# Guarded: the checkpoint uploader is a spawned process, which imports this module again.
if __name__ == "__main__":
    sys.exit(main())
