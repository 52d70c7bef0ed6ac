"""The daemons: node, island and master managers, REST, ZeroMQ and discovery (see issue 4)."""
