"""The exchange simulator. ``EXCHANGE_PURE_POLICY=1``: the policy core from its Python source even when compiled (exchange/compiled.py)."""

import os

if os.environ.get("EXCHANGE_PURE_POLICY") == "1":
    from exchange.compiled import prefer_source

    prefer_source()
