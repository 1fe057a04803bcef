"""Task records across a controller's replacement, as a notebook would use them.

usage: python records.py CLIENT_JSON run          -> RECORD {"msg_ids": [...], "results": [...]}
       python records.py CLIENT_JSON fetch IDS... -> FETCHED {"results": [...], "queried": N}
"""
import json
import sys

import ipyparallel as ipp

rc = ipp.Client(sys.argv[1], timeout=60)
rc.wait_for_engines(4, timeout=300)
if sys.argv[2] == "run":
    ar = rc[:].apply_async(lambda x: x * 6, 7)
    results = ar.get(timeout=120)
    print("RECORD", json.dumps({"msg_ids": ar.msg_ids, "results": results}), flush=True)
else:
    ids = sys.argv[3:]
    # the results come back from the hub's records (the client that ran them is gone)
    results = [rc.get_result(i).get(timeout=60) for i in ids]
    found = rc.db_query({"msg_id": {"$in": ids}}, keys=["msg_id", "completed"])
    print("FETCHED", json.dumps({"results": results, "queried": len([r for r in found if r.get("completed")])}), flush=True)
rc.close()
