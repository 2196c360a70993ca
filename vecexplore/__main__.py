"""``python -m vecexplore`` runs the CLI."""

from vecexplore.cli import main

if __name__ == "__main__":
    main()
