"""``estctl``: initialise the token and CA, manage clients, read the store."""
