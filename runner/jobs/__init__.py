"""What the runner remembers about jobs: the SQLite job store and lifecycle records, the resume
ledger, the process that owns a job, and the Prometheus rendering of job counters."""
