"""``python -m brokers.simulate ...``: run the demo traffic generator (see :mod:`brokers.simulate`)."""

import asyncio
import logging
import sys

from .cli import main, parse_args

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    sys.exit(asyncio.run(main(parse_args())))
