"""Task records through the hub, for the SQLite store tests.

usage: python task_records.py CLIENT_JSON submit N_ENGINES  -> runs labelled tasks, prints their msg_ids
       python task_records.py CLIENT_JSON query MSG_IDS_JSON -> a fresh client reads them back (db_query,
                                                               get_result), prints what it saw
Both print one JSON object.
"""
import json
import sys

import ipyparallel as ipp

from steps import out, step

rc = ipp.Client(sys.argv[1], timeout=30)
mode = sys.argv[2]


def square(x):
    return x * x


def boom():
    raise ValueError("boom")


if mode == "submit":
    n = int(sys.argv[3])
    rc.wait_for_engines(n, timeout=90)
    lview = rc.load_balanced_view()
    dview = rc[:]

    # labels are 9.1+; on 8.x the records simply have none
    has_label = "label" in lview._flag_names

    def labelled(view, label):
        return view.temp_flags(label=label) if has_label else view.temp_flags()

    def submit():
        ids = {}
        for i in range(4):
            with labelled(lview, f"lb-{i}"):
                ar = lview.apply_async(square, i)
            ar.get(timeout=60)
            ids[f"lb-{i}"] = ar.msg_ids[0]
        with labelled(dview, "direct-7"):
            ar = dview.apply_async(square, 7)
        ar.get(timeout=60)
        ids["direct-7"] = ar.msg_ids
        with labelled(lview, "fail-1"):
            ar = lview.apply_async(boom)
        try:
            ar.get(timeout=60)
        except Exception:
            pass
        ids["fail-1"] = ar.msg_ids[0]
        with labelled(dview, "exec-out"):
            ar = dview.execute("print('hello from the engine')", block=False)
        ar.get(timeout=60)
        ids["exec-out"] = ar.msg_ids
        return ids

    step("ids", submit)
elif mode == "query":
    ids = json.loads(sys.argv[3])
    lb = [ids[f"lb-{i}"] for i in range(4)]
    has_label = "label" in rc.load_balanced_view()._flag_names
    fields = (["label"] if has_label else []) + ["queue", "completed", "submitted", "engine_uuid", "stdout", "resubmitted", "client_uuid"]

    def rows(query, keys=fields):
        recs = rc.db_query(query, keys=keys)
        return sorted(
            ({k: (str(type(v).__name__) if k in ("completed", "submitted", "engine_uuid", "client_uuid") and v is not None else v)
              for k, v in r.items()} for r in recs),
            key=lambda r: r["msg_id"],
        )

    def err(f):
        try:
            f()
        except Exception as e:
            return [type(e).__name__, str(e)[:300]]
        return None

    if has_label:
        step("glob_lb", lambda: rows({"label": {"$glob": "lb-*"}}))
        step("glob_class", lambda: [r["label"] for r in rows({"label": {"$glob": "[df]*"}})])
    else:
        step("label_on_8", lambda: err(lambda: rc.db_query({"label": {"$glob": "lb-*"}})))
    step("in", lambda: [r["msg_id"] for r in rows({"msg_id": {"$in": lb[:2]}})] == sorted(lb[:2]))
    step("nin", lambda: len(rows({"msg_id": {"$nin": lb}, "queue": "task"})))
    step("eq_none", lambda: len(rows({"resubmitted": None})))
    step("ne_none_completed", lambda: len(rows({"completed": {"$ne": None}})))
    step("lt_gt_dates", lambda: [
        len(rows({"submitted": {"$lt": rc.db_query({"msg_id": lb[2]}, keys=["submitted"])[0]["submitted"]}, "queue": "task"})),
        len(rows({"submitted": {"$gte": rc.db_query({"msg_id": lb[2]}, keys=["submitted"])[0]["submitted"]}, "queue": "task"})),
    ])
    step("stdout", lambda: sorted(r["stdout"] for r in rows({"msg_id": {"$in": ids["exec-out"]}})))
    if has_label:  # $glob is 9.1+ (an 8.x controller has no such operator; ours has it for every client)
        step("glob_queue", lambda: len(rows({"queue": {"$glob": "t?sk"}})))
    step("buffers", lambda: [
        [len(r.get("buffers") or []), len(r.get("result_buffers") or [])]
        for r in sorted(rc.db_query({"msg_id": lb[0]}, keys=["buffers", "result_buffers"]), key=lambda r: r["msg_id"])
    ])
    step("results", lambda: [rc.get_result(m).get(timeout=30) for m in lb])
    step("direct_result", lambda: rc.get_result(ids["direct-7"]).get(timeout=30))
    step("failed_result", lambda: err(lambda: rc.get_result(ids["fail-1"]).get(timeout=30)))
    step("history_has_all", lambda: all(m in rc.hub_history() for m in lb))
    step("unknown_operator", lambda: err(lambda: rc.db_query({"queue": {"$regex": "x"}})))
    step("illegal_key", lambda: err(lambda: rc.db_query({"bogus": 1})))
    step("bad_keys", lambda: err(lambda: rc.db_query({"queue": "task"}, keys=["bogus"])))
    step("in_null", lambda: err(lambda: rc.db_query({"queue": {"$in": [None, "x"]}})))
    step("in_empty", lambda: err(lambda: rc.db_query({"queue": {"$in": []}})))
    step("exists", lambda: err(lambda: rc.db_query({"queue": {"$exists": True}})))

print(json.dumps(out, default=str))
rc.close()
