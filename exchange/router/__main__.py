"""``python -m exchange.router``: one router worker (see :mod:`exchange.router.app`)."""

from exchange.router.app import main

main()
