"""``python -m zoo``: the same program as the ``zoo`` console script."""

from zoo.launch import main

if __name__ == "__main__":
    main()
