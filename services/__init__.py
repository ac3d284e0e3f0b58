"""Domain logic with no NATS in it: each module is unit-tested directly."""
