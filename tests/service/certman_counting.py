"""`certman` as its own process, each signature of the private CA logged as "name revision".

The concurrency tests run every command through this module, so the log tells how many
times the CA signed each revision across all the processes of a run
(``CERTMAN_TEST_SIGNED``: the log file; one short O_APPEND write per signature).
``CERTMAN_TEST_SIGN_DELAY`` (seconds) makes each signature that much slower, as a busy HSM
would: the window in which a revision is in flight, wide enough for another command to
start inside it.
"""

from __future__ import annotations

import functools
import os
import sys
import time
from collections.abc import Callable
from typing import Any


def _logged(sign: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(sign)
    def wrapper(self: object, request: Any) -> Any:
        time.sleep(float(os.environ.get("CERTMAN_TEST_SIGN_DELAY") or 0))
        response = sign(self, request)
        line = f"{request.name} {request.revision}\n".encode()
        fd = os.open(os.environ["CERTMAN_TEST_SIGNED"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
        return response

    return wrapper


def main() -> None:
    from certman.ca.authority import PrivateCA

    from certman.cli.main import run

    PrivateCA.issue = _logged(PrivateCA.issue)  # type: ignore[method-assign]
    PrivateCA.issue_for_key = _logged(PrivateCA.issue_for_key)  # type: ignore[method-assign]
    sys.argv[0] = "certman"
    run()


if __name__ == "__main__":
    main()
