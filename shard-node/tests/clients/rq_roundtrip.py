"""A real RQ job queue against a Redis-compatible endpoint.

Usage: rq_roundtrip.py [HOST:]PORT [PASSWORD]

Starts an `rq worker` (which waits for jobs with BLPOP), enqueues jobs once it is registered,
lets it run them, and checks every result, the failed job's status and the registries. Exits
non-zero with a message when anything differs; prints "ok <jobs>" on success.
"""
import os
import subprocess
import sys
import time

from redis import Redis
from rq import Queue, Worker
from rq.job import Job

JOBS = 20
DEADLINE = 120


def main():
    host, _, port = sys.argv[1].rpartition(":")
    host = host or "127.0.0.1"
    port = int(port)
    password = sys.argv[2] if len(sys.argv) > 2 else None
    conn = Redis(host=host, port=port, password=password)
    queue = Queue("default", connection=conn)
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, PYTHONPATH=here)
    auth = f":{password}@" if password else ""
    rq = os.path.join(os.path.dirname(sys.executable), "rq")
    worker = subprocess.Popen(
        [rq, "worker", "--url", f"redis://{auth}{host}:{port}", "--max-jobs", str(JOBS + 1), "default"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        start = time.monotonic()
        while not Worker.all(connection=conn):
            if worker.poll() is not None or time.monotonic() - start > DEADLINE:
                sys.exit(f"the worker did not register:\n{worker.stdout.read()}")
            time.sleep(0.05)
        jobs = [queue.enqueue("rq_tasks.add", i, i * 10) for i in range(JOBS)]
        failing = queue.enqueue("rq_tasks.fail")
        try:
            output, _ = worker.communicate(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            worker.kill()
            output, _ = worker.communicate()
            sys.exit(f"the worker did not finish its jobs:\n{output}")
        if worker.returncode != 0:
            sys.exit(f"the worker exited with {worker.returncode}:\n{output}")
    finally:
        if worker.poll() is None:
            worker.kill()
    results = [Job.fetch(j.id, connection=conn).return_value() for j in jobs]
    expected = [i + i * 10 for i in range(JOBS)]
    if results != expected:
        sys.exit(f"results {results} != {expected}\n{output}")
    status = Job.fetch(failing.id, connection=conn).get_status()
    if status != "failed":
        sys.exit(f"the failing job is {status}\n{output}")
    if failing.id not in queue.failed_job_registry.get_job_ids():
        sys.exit("the failing job is not in the failed registry")
    finished = set(queue.finished_job_registry.get_job_ids())
    if not all(j.id in finished for j in jobs):
        sys.exit("some jobs are missing from the finished registry")
    if len(queue) != 0:
        sys.exit(f"{len(queue)} jobs left in the queue")
    print("ok", len(results))


main()
