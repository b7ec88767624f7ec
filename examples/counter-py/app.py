"""The counter of examples/counter in Python, on the Python SDK: each run
reads the clock, sets the search attribute `count`, and continues as new
until it has counted to `until`. The `patched` branch is a change the
first version of this workflow did not have: every execution started now
takes it (and records its marker), one recorded before it would not.
"""

from reprise_sdk import workflow


@workflow
def run(ctx, args):
    ctx.now_ms()
    ctx.upsert_search_attributes({"count": args["count"]})
    if ctx.patched("report-language"):
        ctx.upsert_search_attributes({"language": "python"})
    if args["count"] >= args["until"]:
        return {"count": args["count"], "run_id": ctx.info.run_id}
    ctx.continue_as_new({**args, "count": args["count"] + 1})
