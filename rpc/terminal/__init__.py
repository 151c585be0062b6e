"""``vision-pipeline analyze``'s client side: talking to a running server over HTTP
(``client``), reading its plain SSE stream (``events``), following a job with a progress
display (``follow``) and printing the result for a person (``render``). Needs httpx and rich
only: no settings, no database."""
