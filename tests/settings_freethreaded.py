"""``tests.settings`` for scripts/freethreaded.sh: less the caches whose client has no free-threaded build.

pylibmc is a C extension without a free-threaded build (importing one would turn
the GIL back on): its aliases are left out, so that Django's test-database set-up
(``createcachetable`` visits every cache) does not need it; the tests that use
it are deselected by the script.
"""

from tests.settings import *  # noqa: F403
from tests.settings import CACHES as _ALL_CACHES

ABSENT_CLIENTS = ("pylibmc",)
CACHES = {alias: conf for alias, conf in _ALL_CACHES.items() if not alias.startswith(ABSENT_CLIENTS)}
