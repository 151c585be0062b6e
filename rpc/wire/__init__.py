"""The tRPC wire: dispatch, envelopes and errors, superjson, JSON Lines, SSE framing, limits
and input validation. Knows nothing of jobs, users or the store."""
