"""The NATS plumbing every process shares: connecting (``process``,
``credentials``), KV mirrors and writers, events, shared counters, metrics
and tracing. It imports nothing above ``services``; the CLI floor
(``services.cli``) is built on it."""
