"""Jobs for rq_roundtrip.py: imported by the RQ worker by name."""


def add(a, b):
    return a + b


def fail():
    raise ValueError("this job fails on purpose")
