"""HTTP: the tRPC wire layer, the procedures, auth, and the Starlette app."""
