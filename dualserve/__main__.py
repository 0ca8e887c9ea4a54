"""`python -m dualserve` is the `dualserve` command."""

from dualserve.cli import main

main()
