"""A cohort worker for the tests: joins the leader at ARGV[1] as rank
ARGV[2], prints ``{"rank": r, "size": n}`` once joined, serves until the
membership ends, prints how it ended, and exits once stdin closes (so the
leader has read every acknowledgement before this process goes).

Handlers:
- ``whoami``   JSON x -> {"rank": r, "input": x}
- ``fail_at``  JSON r -> raises ``ValueError("rank <r> refuses")`` at rank r,
               else returns the rank
"""

import json
import sys

import active_message as am


def main() -> None:
    address, rank = sys.argv[1], int(sys.argv[2])
    manager = am.Manager("tcp://127.0.0.1:0")

    def fail_at(target):
        if target == rank:
            raise ValueError(f"rank {rank} refuses")
        return rank

    manager.register("whoami", lambda x: {"rank": rank, "input": x}, codec="json")
    manager.register("fail_at", fail_at, codec="json")
    membership = am.join_cohort(manager, address, rank)
    assert membership.status is None
    print(json.dumps({"rank": membership.rank, "size": membership.size}), flush=True)
    print(json.dumps({"ended": membership.wait_ended()}), flush=True)
    sys.stdin.read()
    manager.shutdown()


if __name__ == "__main__":
    main()
