"""Runs that outlived their process: a build executed in the command's own process, killed."""

from __future__ import annotations

import os
import socket

import dagster as dg

# A run executed in the process that started it (mirocals build): which process, on which host.
# Nothing watches such a run: if the process is killed, the instance keeps it STARTED, and the
# queue (one run at a time) would wait behind it for ever (see fail_abandoned_runs).
IN_PROCESS_PID_TAG, IN_PROCESS_HOST_TAG = "mirocals/pid", "mirocals/host"


def in_process_tags() -> dict[str, str]:
    return {IN_PROCESS_PID_TAG: str(os.getpid()), IN_PROCESS_HOST_TAG: socket.gethostname()}


def fail_abandoned_runs(instance: dg.DagsterInstance, job_name: str) -> list[str]:
    """Mark failed the in-process builds whose process is gone (killed, the machine restarted)
    and that the instance still holds as started; returns their run ids. Call it only while
    holding the build lock: no build is running then."""
    abandoned = []
    records = instance.get_run_records(filters=dg.RunsFilter(
        job_name=job_name, statuses=[dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]))
    for record in records:
        run = record.dagster_run
        pid, host = run.tags.get(IN_PROCESS_PID_TAG), run.tags.get(IN_PROCESS_HOST_TAG)
        if pid is None or host != socket.gethostname() or _alive(int(pid)):
            continue
        instance.report_run_failed(run, message=f"the process that ran this build (PID {pid}) is gone: "
                                                "killed or stopped with the machine; nothing of it was published")
        abandoned.append(run.run_id)
    return abandoned


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True
