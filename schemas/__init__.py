"""Sluice's wire contract: the msgspec Structs every stage shares on the bus."""
