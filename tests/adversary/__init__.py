"""A seeded adversary for heapalias's public API, run in child processes by test_adversarial.

Three families of cases, each a module with ``run_case(case)`` and ``warm_up()``:

``api``         random public calls with bad values, in random orders;
``corruption``  the GC loops on a heap that a second thread rewrites meanwhile;
``peer``        a forked peer misbehaving on a shared heap (or sending bogus handles).

Replay one case, printing every call it makes (from the ``tests`` directory)::

    python -m adversary api 1234
"""
