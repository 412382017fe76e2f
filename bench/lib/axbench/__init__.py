"""axbench -- the machinery behind bench/run.

Modules:
  util      free ports, HTTP requests, percentiles, the progress line
  servers   the servers under test: a fresh axon, the nginx baseline, an external
            target; RSS/CPU sampling from /proc
  tools     wrk, ab and h2load: command lines, running them, parsing their output
  matrix    Matrix client helpers for scenarios (user registration, "not supported")
  machine   facts about this machine and the tools for the report
  report    the Markdown report, the JSON results and the gnuplot plots
  runner    command line, orchestration, the Context scenarios are given

Only the Python 3 standard library is used (Debian's /usr/bin/python3).
"""
