"""Batch jobs: the OpenAI Batch API served by claw, kept in the session store and drained when the GPU would idle.

- `lines`: the input file's lines (OpenAI's batch line, and the native form of `claw batch submit`), checked.
- `store`: files, jobs and each request's state and result in SQLite tables that outlive sessions.
- `objects`: the JSON shapes the `openai` SDK expects (file, batch, list, output and error lines).
- `drain`: the scheduler that runs batch lines through claw's own gateway when interactive traffic leaves room.
- `service`: what the endpoints, the console and the CLI call; `api`: the HTTP endpoints; `webhook`: the call that
  tells a submitter a job ended.
"""
