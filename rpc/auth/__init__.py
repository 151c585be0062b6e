"""Who is calling: session tokens, the session cache and user rows, cookies, the OAuth login."""
