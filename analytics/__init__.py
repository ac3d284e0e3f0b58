"""ClickHouse: migrations, the event sink, and named analytics queries."""
