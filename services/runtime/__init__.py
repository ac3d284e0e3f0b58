"""Process plumbing: the supervisor and CLI, and the small NATS helpers
(connect, KV mirrors, event batching) that every process shares."""
